//! The one place that knows which database holds the store: SQLite (embedded, the
//! default) or PostgreSQL (several service replicas on one database). Every rule of the
//! store is written once, above this module, in SQL both understand: `?N` placeholders
//! (rewritten to `$N` for PostgreSQL), `ON CONFLICT … DO UPDATE`, `RETURNING`, `CAST`, and
//! only integer, real, text and blob values ([`Arg`] in, [`Cell`] out). What differs —
//! opening, the schema's DDL, how a write transaction excludes other writers — is here
//! and in `schema.rs`.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::{ConsentId, DisputeId, PrincipalId, StoreError};

/// A value bound to a statement.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// What can be bound.
pub(crate) trait ToArg {
    fn to_arg(&self) -> Arg<'_>;
}

impl ToArg for i64 {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Int(*self)
    }
}

impl ToArg for u32 {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Int(i64::from(*self))
    }
}

impl ToArg for f64 {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Real(*self)
    }
}

impl ToArg for str {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
}

impl ToArg for String {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
}

impl ToArg for [u8] {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Blob(self)
    }
}

impl ToArg for Vec<u8> {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Blob(self)
    }
}

impl<const N: usize> ToArg for [u8; N] {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Blob(self)
    }
}

impl<T: ToArg + ?Sized> ToArg for &T {
    fn to_arg(&self) -> Arg<'_> {
        (**self).to_arg()
    }
}

impl<T: ToArg> ToArg for Option<T> {
    fn to_arg(&self) -> Arg<'_> {
        self.as_ref().map_or(Arg::Null, ToArg::to_arg)
    }
}

macro_rules! id_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn to_arg(&self) -> Arg<'_> {
                Arg::Int(self.0)
            }
        }
        impl FromCell for $t {
            fn from_cell(c: &Cell) -> Result<Self, String> {
                i64::from_cell(c).map(Self)
            }
        }
    )*};
}
id_arg!(PrincipalId, ConsentId, DisputeId);

/// The arguments of a statement, in placeholder order: `args![a, b]`.
macro_rules! args {
    ($($e:expr),* $(,)?) => {
        &[$($crate::sql::ToArg::to_arg(&$e)),*]
    };
}
pub(crate) use args;

/// A value read back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    /// The cell as an argument (to copy it into another database).
    pub(crate) fn as_arg(&self) -> Arg<'_> {
        match self {
            Cell::Null => Arg::Null,
            Cell::Int(i) => Arg::Int(*i),
            Cell::Real(x) => Arg::Real(*x),
            Cell::Text(t) => Arg::Text(t),
            Cell::Blob(b) => Arg::Blob(b),
        }
    }
}

/// What can be read from a cell.
pub(crate) trait FromCell: Sized {
    fn from_cell(c: &Cell) -> Result<Self, String>;
}

impl FromCell for i64 {
    fn from_cell(c: &Cell) -> Result<i64, String> {
        match c {
            Cell::Int(i) => Ok(*i),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

impl FromCell for u32 {
    fn from_cell(c: &Cell) -> Result<u32, String> {
        let i = i64::from_cell(c)?;
        u32::try_from(i).map_err(|_| format!("{i} is out of range"))
    }
}

impl FromCell for f64 {
    fn from_cell(c: &Cell) -> Result<f64, String> {
        match c {
            Cell::Real(x) => Ok(*x),
            // SQLite stores a real with no fraction as an integer when it can.
            #[allow(clippy::cast_precision_loss)]
            Cell::Int(i) => Ok(*i as f64),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}

impl FromCell for String {
    fn from_cell(c: &Cell) -> Result<String, String> {
        match c {
            Cell::Text(s) => Ok(s.clone()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl FromCell for Vec<u8> {
    fn from_cell(c: &Cell) -> Result<Vec<u8>, String> {
        match c {
            Cell::Blob(b) => Ok(b.clone()),
            Cell::Text(s) => Ok(s.as_bytes().to_vec()),
            other => Err(format!("expected bytes, found {other:?}")),
        }
    }
}

impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(c: &Cell) -> Result<Option<T>, String> {
        match c {
            Cell::Null => Ok(None),
            c => T::from_cell(c).map(Some),
        }
    }
}

/// One row read back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row(Vec<Cell>);

impl Row {
    /// The row's cells.
    pub(crate) fn cells(&self) -> &[Cell] {
        &self.0
    }

    /// Column `i`, converted; a missing column or a value of another type is a damaged
    /// database (the store wrote every row itself).
    pub(crate) fn get<T: FromCell>(&self, i: usize) -> Result<T, StoreError> {
        let c = self
            .0
            .get(i)
            .ok_or_else(|| StoreError::Damaged(format!("column {i} is missing")))?;
        T::from_cell(c).map_err(|e| StoreError::Damaged(format!("column {i}: {e}")))
    }
}

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Which writers a transaction excludes. SQLite has one writer at a time whatever is
/// asked (`BEGIN IMMEDIATE`); PostgreSQL takes a transaction-scoped advisory lock, so the
/// log's appends from every replica form one sequence while other writes go on beside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// Principals, keys, consents, disputes, idempotency records.
    State,
    /// The query log and its heads.
    Log,
    /// The shared rate allowances.
    Allowance,
}

impl Lock {
    /// The advisory lock's key (an arbitrary constant: "yuanxin" and a number).
    fn key(self) -> i64 {
        match self {
            Lock::State => 0x7975_616e_7869_6e01,
            Lock::Log => 0x7975_616e_7869_6e02,
            Lock::Allowance => 0x7975_616e_7869_6e03,
        }
    }
}

/// The advisory lock held while the schema is migrated (session-scoped).
pub(crate) const MIGRATION_LOCK: i64 = 0x7975_616e_7869_6e00;

/// A PostgreSQL connection with its prepared statements. A connection the server closed
/// (a restart, a network cut) is replaced at the next use, outside any transaction.
pub(crate) struct Pg {
    url: String,
    client: RefCell<postgres::Client>,
    statements: RefCell<HashMap<String, postgres::Statement>>,
    /// Inside a transaction: a lost connection is then an error, never silently replaced.
    in_tx: std::cell::Cell<bool>,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pg")
    }
}

/// The connection.
#[derive(Debug)]
pub(crate) enum Conn {
    Sqlite(rusqlite::Connection),
    /// Boxed: a client with its runtime is several times an SQLite handle's size.
    Postgres(Box<Pg>),
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        // The server's own message is the useful part (constraint names, codes). An error
        // without one is the connection's: the server is down, restarting or unreachable
        // (as are the server's own "shutting down" and "cannot connect now" answers).
        match e.as_db_error() {
            Some(db)
                if db.code().code().starts_with("57P") || db.code().code().starts_with("08") =>
            {
                StoreError::Unavailable(format!("{}: {}", db.code().code(), db.message()))
            }
            Some(db) => StoreError::Database(format!("{}: {}", db.code().code(), db.message())),
            None if e.is_closed()
                || e.to_string().contains("connect")
                || e.to_string().contains("connection") =>
            {
                StoreError::Unavailable(e.to_string())
            }
            None => StoreError::Database(e.to_string()),
        }
    }
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match *self {
            Arg::Null => ToSqlOutput::Owned(Value::Null),
            Arg::Int(i) => ToSqlOutput::Owned(Value::Integer(i)),
            Arg::Real(x) => ToSqlOutput::Owned(Value::Real(x)),
            Arg::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Arg::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

impl postgres::types::ToSql for Arg<'_> {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        match *self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(i) => match *ty {
                // An SQLite integer bound to a text column (meta values, when a store is
                // copied from SQLite).
                Type::TEXT | Type::VARCHAR => i.to_string().as_str().to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                #[allow(clippy::cast_precision_loss)]
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            Arg::Real(x) => x.to_sql(ty, out),
            Arg::Text(s) => s.to_sql(ty, out),
            Arg::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        // Checked per value in `to_sql`: a wrong type is an error there, not a panic.
        true
    }

    postgres::types::to_sql_checked!();
}

/// `?N` placeholders as PostgreSQL's `$N` (the store's SQL has no `?` elsewhere).
fn dollar_placeholders(sql: &str) -> String {
    sql.replace('?', "$")
}

fn sqlite_cell(v: rusqlite::types::ValueRef<'_>) -> Cell {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        ValueRef::Real(x) => Cell::Real(x),
        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
    }
}

fn pg_row(r: &postgres::Row) -> Result<Row, StoreError> {
    use postgres::types::Type;
    let mut cells = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let cell = match *col.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Cell::Int),
            Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map(|x| Cell::Int(x.into())),
            Type::INT2 => r.try_get::<_, Option<i16>>(i)?.map(|x| Cell::Int(x.into())),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)?
                .map(|x| Cell::Int(x.into())),
            Type::FLOAT8 => r.try_get::<_, Option<f64>>(i)?.map(Cell::Real),
            Type::FLOAT4 => r
                .try_get::<_, Option<f32>>(i)?
                .map(|x| Cell::Real(x.into())),
            Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i)?.map(Cell::Blob),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                r.try_get::<_, Option<String>>(i)?.map(Cell::Text)
            }
            ref other => {
                return Err(StoreError::Database(format!(
                    "column {} has type {other}, which the store does not read",
                    col.name()
                )))
            }
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

impl Pg {
    pub(crate) fn connect(url: &str) -> Result<Pg, StoreError> {
        Ok(Pg {
            url: url.to_owned(),
            client: RefCell::new(Self::client(url)?),
            statements: RefCell::new(HashMap::new()),
            in_tx: std::cell::Cell::new(false),
        })
    }

    fn client(url: &str) -> Result<postgres::Client, StoreError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("the database URL: {e}")))?;
        // A server that does not answer is unavailable, not a hang.
        config.connect_timeout(std::time::Duration::from_secs(5));
        config.connect(postgres::NoTls).map_err(|e| {
            let e = StoreError::from(e);
            match e {
                StoreError::Database(m) => StoreError::Unavailable(m),
                other => other,
            }
        })
    }

    /// The client, reconnected first if the server closed it (outside a transaction).
    fn live(&self) -> Result<std::cell::RefMut<'_, postgres::Client>, StoreError> {
        let mut client = self
            .client
            .try_borrow_mut()
            .map_err(|_| StoreError::Database("nested use of a connection".into()))?;
        if client.is_closed() && !self.in_tx.get() {
            *client = Self::client(&self.url)?;
            // Prepared statements belong to the old session.
            if let Ok(mut st) = self.statements.try_borrow_mut() {
                st.clear();
            }
        }
        Ok(client)
    }

    /// Runs `f` on the statement; `retry`: a read, or the start of a transaction, which
    /// may be run again on a new connection if the old one turns out to be dead (a server
    /// restarted since its last use): the first use after an outage then succeeds.
    fn with<T>(
        &self,
        sql: &str,
        retry: bool,
        f: impl Fn(&mut postgres::Client, &postgres::Statement) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        match self.attempt(sql, &f) {
            Err(Broken::Closed(_)) if retry && !self.in_tx.get() => {
                self.reconnect()?;
                self.attempt(sql, &f).map_err(StoreError::from)
            }
            other => other.map_err(StoreError::from),
        }
    }

    fn attempt<T>(
        &self,
        sql: &str,
        f: &impl Fn(&mut postgres::Client, &postgres::Statement) -> Result<T, postgres::Error>,
    ) -> Result<T, Broken> {
        let mut client = self.live()?;
        let mut statements = self
            .statements
            .try_borrow_mut()
            .map_err(|_| StoreError::Database("nested use of a connection".into()))?;
        let st = match statements.get(sql) {
            Some(st) => st.clone(),
            None => {
                let st = client.prepare(&dollar_placeholders(sql))?;
                statements.insert(sql.to_owned(), st.clone());
                st
            }
        };
        drop(statements);
        Ok(f(&mut client, &st)?)
    }

    fn reconnect(&self) -> Result<(), StoreError> {
        let mut client = self
            .client
            .try_borrow_mut()
            .map_err(|_| StoreError::Database("nested use of a connection".into()))?;
        *client = Self::client(&self.url)?;
        if let Ok(mut st) = self.statements.try_borrow_mut() {
            st.clear();
        }
        Ok(())
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        let run = || -> Result<(), Broken> { Ok(self.live()?.batch_execute(sql)?) };
        match run() {
            Err(Broken::Closed(_)) if sql == "BEGIN" && !self.in_tx.get() => {
                self.reconnect()?;
                run().map_err(StoreError::from)
            }
            other => other.map_err(StoreError::from),
        }
    }
}

/// A failed call: on a connection found dead (worth one retry on a new one), or otherwise.
enum Broken {
    Closed(postgres::Error),
    Other(StoreError),
}

impl From<postgres::Error> for Broken {
    fn from(e: postgres::Error) -> Broken {
        // Closed, or the server's last word on it (shut down, terminated, cannot connect).
        let dead = e
            .code()
            .is_some_and(|c| c.code().starts_with("57P") || c.code().starts_with("08"));
        if e.is_closed() || dead {
            Broken::Closed(e)
        } else {
            Broken::Other(e.into())
        }
    }
}

impl From<StoreError> for Broken {
    fn from(e: StoreError) -> Broken {
        Broken::Other(e)
    }
}

impl From<Broken> for StoreError {
    fn from(b: Broken) -> StoreError {
        match b {
            Broken::Closed(e) => e.into(),
            Broken::Other(e) => e,
        }
    }
}

fn pg_params<'a>(args: &'a [Arg<'a>]) -> Vec<&'a (dyn postgres::types::ToSql + Sync)> {
    args.iter()
        .map(|a| a as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

impl Conn {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs a statement; returns the rows it changed.
    pub(crate) fn exec(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let n = c
                    .prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(args.iter()))?;
                Ok(n as u64)
            }
            Conn::Postgres(pg) => pg.with(sql, false, |c, st| c.execute(st, &pg_params(args))),
        }
    }

    /// Inserts rows of `width` values each (`values` holds them one after another) with
    /// `insert` (`INSERT INTO t (columns)`, no `VALUES`): one prepared single-row statement
    /// per row on SQLite (in process, nothing to save), many rows per statement on
    /// PostgreSQL (a round trip each).
    pub(crate) fn insert_rows(
        &self,
        insert: &str,
        width: usize,
        values: &[Arg<'_>],
    ) -> Result<(), StoreError> {
        /// Rows per PostgreSQL statement (at most 65,535 parameters a statement).
        const ROWS: usize = 256;
        let tuple = |row: usize| -> String {
            let marks: Vec<String> = (1..=width)
                .map(|c| format!("?{}", row * width + c))
                .collect();
            format!("({})", marks.join(", "))
        };
        if width == 0 {
            return Ok(());
        }
        match self {
            Conn::Sqlite(_) => {
                let sql = format!("{insert} VALUES {}", tuple(0));
                for row in values.chunks(width) {
                    self.exec(&sql, row)?;
                }
            }
            Conn::Postgres(_) => {
                for chunk in values.chunks(width * ROWS) {
                    let rows = chunk.len() / width;
                    let tuples: Vec<String> = (0..rows).map(tuple).collect();
                    self.exec(&format!("{insert} VALUES {}", tuples.join(", ")), chunk)?;
                }
            }
        }
        Ok(())
    }

    /// Runs a query; returns all its rows.
    pub(crate) fn rows(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let n = st.column_count();
                let mut rows = st.query(rusqlite::params_from_iter(args.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut cells = Vec::with_capacity(n);
                    for i in 0..n {
                        cells.push(sqlite_cell(r.get_ref(i)?));
                    }
                    out.push(Row(cells));
                }
                Ok(out)
            }
            Conn::Postgres(pg) => pg
                .with(sql, true, |c, st| c.query(st, &pg_params(args)))?
                .iter()
                .map(pg_row)
                .collect(),
        }
    }

    /// Runs a query; returns its first row, if any.
    pub(crate) fn row(&self, sql: &str, args: &[Arg<'_>]) -> Result<Option<Row>, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let n = st.column_count();
                let mut rows = st.query(rusqlite::params_from_iter(args.iter()))?;
                match rows.next()? {
                    Some(r) => {
                        let mut cells = Vec::with_capacity(n);
                        for i in 0..n {
                            cells.push(sqlite_cell(r.get_ref(i)?));
                        }
                        Ok(Some(Row(cells)))
                    }
                    None => Ok(None),
                }
            }
            Conn::Postgres(pg) => pg
                .with(sql, true, |c, st| c.query_opt(st, &pg_params(args)))?
                .as_ref()
                .map(pg_row)
                .transpose(),
        }
    }

    /// Runs statements with no arguments (DDL, transaction control).
    pub(crate) fn batch(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Postgres(pg) => pg.batch(sql),
        }
    }

    /// Runs `f` in one write transaction that excludes the writers `lock` names; commits
    /// if it returns `Ok`, rolls back otherwise.
    pub(crate) fn write<T>(
        &self,
        lock: Lock,
        f: impl FnOnce(&Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            Conn::Sqlite(_) => self.batch("BEGIN IMMEDIATE")?,
            Conn::Postgres(pg) => {
                self.batch("BEGIN")?;
                pg.in_tx.set(true);
                if let Err(e) = self.exec("SELECT pg_advisory_xact_lock(?1)", args![lock.key()]) {
                    self.end("ROLLBACK");
                    return Err(e);
                }
            }
        }
        let done = self.finish(f(self));
        if let Conn::Postgres(pg) = self {
            pg.in_tx.set(false);
        }
        done
    }

    /// Ends a transaction, whatever state the connection is in.
    fn end(&self, how: &str) {
        let _ = self.batch(how);
        if let Conn::Postgres(pg) = self {
            pg.in_tx.set(false);
        }
    }

    fn finish<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result {
            Ok(v) => {
                if let Err(e) = self.batch("COMMIT") {
                    let _ = self.batch("ROLLBACK");
                    return Err(e);
                }
                Ok(v)
            }
            Err(e) => {
                // The error that matters is the first; a failed rollback leaves nothing
                // committed either way.
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}
