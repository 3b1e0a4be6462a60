-- The first service's database (schema versions 1–4), for the upgrade test.
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE principals (
   key_id TEXT PRIMARY KEY, role TEXT NOT NULL, name TEXT NOT NULL,
   merchant_id TEXT, key_digest BLOB NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT);
CREATE TABLE consents (
   id INTEGER PRIMARY KEY, merchant_id TEXT NOT NULL, lender TEXT NOT NULL, purpose TEXT NOT NULL,
   granted_at TEXT NOT NULL, expires_at TEXT NOT NULL, revoked_at TEXT);
CREATE TABLE query_log (
   seq INTEGER PRIMARY KEY, at TEXT NOT NULL, principal TEXT NOT NULL, merchant_id TEXT NOT NULL,
   action TEXT NOT NULL, purpose TEXT NOT NULL, consent_id INTEGER, outcome TEXT NOT NULL,
   model_id TEXT NOT NULL, response_digest TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE disputes (
   id INTEGER PRIMARY KEY, merchant_id TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL,
   opened_at TEXT NOT NULL, deadline TEXT NOT NULL, answer TEXT, answered_at TEXT);
CREATE TABLE lender_views (
   lender TEXT NOT NULL, merchant_id TEXT NOT NULL, at TEXT NOT NULL, grade TEXT NOT NULL,
   escrow_coverage REAL, PRIMARY KEY (lender, merchant_id));
CREATE INDEX consents_lender ON consents (lender, purpose);
CREATE INDEX consents_merchant ON consents (merchant_id, lender, purpose);
CREATE INDEX disputes_merchant ON disputes (merchant_id);
PRAGMA user_version = 4;
