//! The source-data contract: every table the credit platform receives, its columns, their
//! logical types and rules. This module is the single source of truth: the Arrow schemas of
//! the ledger, the validation of incoming rows and `docs/data-model.md` are all derived from
//! the specs below.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use yuanxin_domain as d;

/// Logical type of a column. The physical Arrow type in the ledger follows from it; inputs
/// may use any physical type that converts exactly (see `convert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// An identifier: 1–64 characters of `[A-Za-z0-9._-]`.
    Id,
    /// Free text (names, authorities).
    Text,
    /// One value of a closed code list.
    Code(CodeList),
    /// A code whose list depends on the row's `kind` (see the table's rules).
    KindCode,
    /// A unified social credit code with a valid GB 32100-2015 check character.
    Uscc,
    /// Yuan, ≥ 0, at most 2 decimal places. Ledger type `Decimal128(18, 2)`.
    Money,
    /// A share between 0 and 1 with at most 4 decimal places. Ledger type `Decimal128(9, 4)`.
    Ratio,
    /// A non-negative whole number. Ledger type `Int64`.
    Count,
    /// True or false.
    Bool,
    /// An instant, stored as milliseconds with zone +08:00 (Asia/Shanghai).
    Timestamp,
    /// A calendar date in Asia/Shanghai.
    Date,
}

/// A closed list of codes, by name and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeList {
    /// What the list is called.
    pub what: &'static str,
    /// The accepted codes.
    pub codes: &'static [&'static str],
}

impl CodeList {
    /// True if `code` is on the list (case-sensitive).
    pub fn contains(&self, code: &str) -> bool {
        self.codes.contains(&code)
    }
}

macro_rules! list {
    ($t:ty) => {
        CodeList {
            what: <$t>::WHAT,
            codes: <$t>::CODES,
        }
    };
}

/// One column of a source table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Column name, as in files.
    pub name: &'static str,
    /// Logical type.
    pub ty: ColType,
    /// Whether every row must have a value (some columns are required only for some kinds;
    /// those rules live with the table).
    pub required: bool,
    /// What the column means.
    pub doc: &'static str,
}

const fn col(name: &'static str, ty: ColType, required: bool, doc: &'static str) -> Column {
    Column {
        name,
        ty,
        required,
        doc,
    }
}

/// The source tables, in dependency order: a table's references point only to tables
/// before it, and ingestion processes files in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Merchants,
    StoreEvents,
    Products,
    Contracts,
    EscrowEvents,
    WalletFlows,
    Operations,
    Promotions,
    Complaints,
    PublicRecords,
    Loans,
    BureauRecords,
}

const COMMON_EVENT_ID: Column = col(
    "event_id",
    ColType::Id,
    true,
    "Unique id of this row at its source; a row delivered twice keeps its id.",
);
const COMMON_MERCHANT: Column = col(
    "merchant_id",
    ColType::Id,
    true,
    "The merchant (must be registered in `merchants`).",
);
const COMMON_TS: Column = col(
    "ts",
    ColType::Timestamp,
    true,
    "When the event happened (Asia/Shanghai).",
);

const MERCHANTS: &[Column] = &[
    COMMON_EVENT_ID,
    col(
        "merchant_id",
        ColType::Id,
        true,
        "The merchant's platform id (other tables refer to it).",
    ),
    col(
        "ts",
        ColType::Timestamp,
        true,
        "When this registration record was issued.",
    ),
    col(
        "uscc",
        ColType::Uscc,
        true,
        "Unified social credit code (统一社会信用代码).",
    ),
    col("name", ColType::Text, true, "Registered name."),
    col(
        "legal_form",
        ColType::Code(list!(d::LegalForm)),
        true,
        "Company or individual business (个体工商户).",
    ),
    col(
        "industry",
        ColType::Code(list!(d::Industry)),
        true,
        "Pilot industry.",
    ),
    col(
        "district",
        ColType::Code(list!(d::District)),
        true,
        "District of registration.",
    ),
    col(
        "registered_on",
        ColType::Date,
        true,
        "Date of business registration.",
    ),
    col(
        "ecny_onboarded_on",
        ColType::Date,
        false,
        "Date the merchant joined 元管家, if it has.",
    ),
    col(
        "custody_mode",
        ColType::Code(list!(d::CustodyMode)),
        true,
        "How prepayments are protected.",
    ),
    col(
        "freeze_ratio",
        ColType::Ratio,
        true,
        "Default share of each prepayment frozen in escrow (0–1).",
    ),
    col(
        "owner_group_id",
        ColType::Id,
        false,
        "Links entities of the same owners (related parties).",
    ),
    col(
        "guarantee_amount",
        ColType::Money,
        false,
        "RISK_RESERVE: the reserve deposited; PERFORMANCE_BOND: the policy's cover, in yuan.",
    ),
];

const STORE_EVENTS: &[Column] = &[
    COMMON_EVENT_ID,
    COMMON_MERCHANT,
    COMMON_TS,
    col("store_id", ColType::Id, true, "The store."),
    col(
        "kind",
        ColType::Code(list!(d::StoreEventKind)),
        true,
        "OPENED or CLOSED.",
    ),
    col(
        "district",
        ColType::Code(list!(d::District)),
        true,
        "Where the store is.",
    ),
    col(
        "in_mall",
        ColType::Bool,
        false,
        "Whether the store is inside a shopping mall.",
    ),
    col(
        "area_m2",
        ColType::Count,
        false,
        "Floor area in square metres (OPENED).",
    ),
    col(
        "lease_end_on",
        ColType::Date,
        false,
        "End of the store's lease (OPENED).",
    ),
    col(
        "announced_days_ahead",
        ColType::Count,
        false,
        "Days of public notice before closing (CLOSED; rules require 30).",
    ),
];

const PRODUCTS: &[Column] = &[
    COMMON_EVENT_ID,
    COMMON_MERCHANT,
    col(
        "ts",
        ColType::Timestamp,
        true,
        "When the product was put on sale.",
    ),
    col("product_id", ColType::Id, true, "The product."),
    col(
        "kind",
        ColType::Code(list!(d::ProductKind)),
        true,
        "Class pack, time card, stored value or count card.",
    ),
    col(
        "list_price",
        ColType::Money,
        true,
        "Catalogue price in yuan.",
    ),
    col(
        "bonus_value",
        ColType::Money,
        false,
        "Extra value granted on top of the price (充送), in yuan.",
    ),
    col(
        "units",
        ColType::Count,
        true,
        "Classes, visits or months sold (1 for stored value).",
    ),
    col(
        "validity_days",
        ColType::Count,
        true,
        "Days the contract stays valid.",
    ),
    col(
        "release_mode",
        ColType::Code(list!(d::ReleaseMode)),
        true,
        "PER_UNIT (一课一释) or PER_MONTH (一月一释).",
    ),
    col(
        "freeze_ratio",
        ColType::Ratio,
        true,
        "Share of each prepayment frozen in escrow.",
    ),
    col(
        "expiry_disposition",
        ColType::Code(list!(d::ExpiryDisposition)),
        true,
        "What happens to an unredeemed balance at expiry.",
    ),
];

const CONTRACTS: &[Column] = &[
    COMMON_EVENT_ID,
    COMMON_MERCHANT,
    col(
        "ts",
        ColType::Timestamp,
        true,
        "When the consumer signed (the prepayment follows).",
    ),
    col(
        "contract_id",
        ColType::Id,
        true,
        "The consumer contract (one smart-contract wallet).",
    ),
    col(
        "product_id",
        ColType::Id,
        true,
        "The product bought (must be in `products`).",
    ),
    col("store_id", ColType::Id, false, "Store where it was sold."),
    col(
        "consumer_id",
        ColType::Id,
        true,
        "Pseudonymous consumer id.",
    ),
    col("paid_amount", ColType::Money, true, "Price paid in yuan."),
    col(
        "discount",
        ColType::Ratio,
        true,
        "Discount on the list price (0–1).",
    ),
    col(
        "bonus_value",
        ColType::Money,
        false,
        "Bonus value granted (充送) in yuan.",
    ),
    col("units_total", ColType::Count, true, "Units bought."),
    col("expires_on", ColType::Date, true, "Last day of validity."),
];

const ESCROW_EVENTS: &[Column] = &[
    COMMON_EVENT_ID,
    COMMON_MERCHANT,
    COMMON_TS,
    col("contract_id", ColType::Id, true, "The contract (must be in `contracts`)."),
    col("kind", ColType::Code(list!(d::EscrowEventKind)), true, "PREPAYMENT, REDEMPTION, RELEASE, RELEASE_REJECTED, REFUND_REQUESTED, REFUND_COMPLETED or EXPIRY."),
    col("amount", ColType::Money, true, "Yuan: paid, redeemed value, released, requested, refunded or unredeemed at expiry."),
    col("frozen_amount", ColType::Money, false, "PREPAYMENT only: the part frozen by the smart contract (≤ amount)."),
    col("units", ColType::Count, false, "REDEMPTION only: units consumed (核销)."),
    col("code", ColType::KindCode, false, "Depends on kind: channel (PREPAYMENT), trigger (RELEASE), reason (RELEASE_REJECTED, REFUND_REQUESTED), source (REFUND_COMPLETED), disposition (EXPIRY); empty for REDEMPTION."),
];

const WALLET_FLOWS: &[Column] = &[
    COMMON_EVENT_ID,
    COMMON_MERCHANT,
    COMMON_TS,
    col(
        "kind",
        ColType::Code(list!(d::WalletFlowKind)),
        true,
        "SPOT_SALE (a business day's non-prepaid sales) or WITHDRAWAL.",
    ),
    col("amount", ColType::Money, true, "Yuan."),
    col(
        "tx_count",
        ColType::Count,
        false,
        "SPOT_SALE: number of sales that day.",
    ),
    col(
        "channel",
        ColType::Code(list!(d::SpotChannel)),
        false,
        "SPOT_SALE: main payment channel.",
    ),
    col(
        "dest_account",
        ColType::Id,
        false,
        "WITHDRAWAL: pseudonymised destination account.",
    ),
    col(
        "dest_account_changed",
        ColType::Bool,
        false,
        "WITHDRAWAL: destination differs from the previous withdrawal's.",
    ),
];

const OPERATIONS: &[Column] = &[
    COMMON_EVENT_ID,
    COMMON_MERCHANT,
    COMMON_TS,
    col(
        "kind",
        ColType::Code(list!(d::OperationKind)),
        true,
        "PAYROLL, SOCIAL_INSURANCE, UTILITY or RENT.",
    ),
    col(
        "period",
        ColType::Date,
        true,
        "First day of the month the record covers.",
    ),
    col(
        "amount",
        ColType::Money,
        false,
        "Yuan paid (payroll, contributions, utility bill) or due (rent).",
    ),
    col(
        "headcount",
        ColType::Count,
        false,
        "PAYROLL and SOCIAL_INSURANCE: people paid or insured.",
    ),
    col(
        "on_time",
        ColType::Bool,
        false,
        "PAYROLL, SOCIAL_INSURANCE and RENT: paid by the due date.",
    ),
    col(
        "utility_kind",
        ColType::Code(list!(d::UtilityKind)),
        false,
        "UTILITY: electricity, water or gas.",
    ),
    col(
        "usage",
        ColType::Count,
        false,
        "UTILITY: metered usage (kWh or m³).",
    ),
];

const PROMOTIONS: &[Column] = &[
    COMMON_EVENT_ID,
    COMMON_MERCHANT,
    COMMON_TS,
    col(
        "product_id",
        ColType::Id,
        true,
        "The promoted product (must be in `products`).",
    ),
    col(
        "discount",
        ColType::Ratio,
        true,
        "Discount on the list price (0–1).",
    ),
    col(
        "bonus",
        ColType::Ratio,
        true,
        "Bonus value as a share of the price paid (充送).",
    ),
    col(
        "tenor_days",
        ColType::Count,
        true,
        "Validity of contracts sold under the promotion.",
    ),
    col(
        "ends_on",
        ColType::Date,
        false,
        "Last day of the promotion.",
    ),
];

const COMPLAINTS: &[Column] = &[
    COMMON_EVENT_ID,
    COMMON_MERCHANT,
    COMMON_TS,
    col(
        "channel",
        ColType::Code(list!(d::ComplaintChannel)),
        true,
        "12315, 12345, consumer council or platform.",
    ),
    col(
        "category",
        ColType::Code(list!(d::ComplaintCategory)),
        true,
        "What the complaint is about.",
    ),
    col(
        "amount",
        ColType::Money,
        false,
        "Amount in dispute, in yuan.",
    ),
    col(
        "contract_id",
        ColType::Id,
        false,
        "The contract concerned, if known (must be in `contracts`).",
    ),
];

const PUBLIC_RECORDS: &[Column] = &[
    COMMON_EVENT_ID,
    COMMON_MERCHANT,
    COMMON_TS,
    col(
        "kind",
        ColType::Code(list!(d::PublicRecordKind)),
        true,
        "Penalty, abnormal-operation listing or removal, lawsuit as defendant, enforcement case (被执行人), dishonest-debtor listing (失信被执行人) or removal.",
    ),
    col(
        "amount",
        ColType::Money,
        false,
        "Fine, amount claimed or sum to enforce, in yuan.",
    ),
    col(
        "authority",
        ColType::Text,
        false,
        "Issuing authority or court.",
    ),
    col("case_type", ColType::Text, false, "Case type as published."),
];

const BUREAU_RECORDS: &[Column] = &[
    COMMON_EVENT_ID,
    COMMON_MERCHANT,
    COMMON_TS,
    col(
        "kind",
        ColType::Code(list!(d::BureauRecordKind)),
        true,
        "DEBT_BALANCE (month-end balance owed) or INQUIRY (a credit inquiry).",
    ),
    col(
        "institution_type",
        ColType::Code(list!(d::InstitutionType)),
        true,
        "The creditor (DEBT_BALANCE) or the inquirer (INQUIRY).",
    ),
    col(
        "amount",
        ColType::Money,
        false,
        "DEBT_BALANCE: balance owed at month end; INQUIRY: amount applied for, if known. Yuan.",
    ),
    col(
        "purpose",
        ColType::Code(list!(d::InquiryPurpose)),
        false,
        "INQUIRY: why the institution inquired.",
    ),
];

const LOANS: &[Column] = &[
    COMMON_EVENT_ID,
    COMMON_MERCHANT,
    COMMON_TS,
    col("loan_id", ColType::Id, true, "The loan."),
    col(
        "kind",
        ColType::Code(list!(d::LoanEventKind)),
        true,
        "DISBURSEMENT, SCHEDULED_REPAYMENT, REPAYMENT or STATUS.",
    ),
    col(
        "lender",
        ColType::Code(list!(d::Lender)),
        true,
        "Lending institution.",
    ),
    col(
        "amount",
        ColType::Money,
        false,
        "Yuan disbursed, due or repaid (required except for STATUS).",
    ),
    col(
        "term_months",
        ColType::Count,
        false,
        "DISBURSEMENT: term in months.",
    ),
    col(
        "annual_rate",
        ColType::Ratio,
        false,
        "DISBURSEMENT: annual interest rate.",
    ),
    col(
        "due_on",
        ColType::Date,
        false,
        "SCHEDULED_REPAYMENT: due date.",
    ),
    col(
        "dpd",
        ColType::Count,
        false,
        "STATUS: days past due at month end (required for STATUS).",
    ),
];

impl Table {
    /// Every table, in dependency order.
    pub const ALL: [Table; 12] = [
        Table::Merchants,
        Table::StoreEvents,
        Table::Products,
        Table::Contracts,
        Table::EscrowEvents,
        Table::WalletFlows,
        Table::Operations,
        Table::Promotions,
        Table::Complaints,
        Table::PublicRecords,
        Table::Loans,
        Table::BureauRecords,
    ];

    /// The table's name, as used in file names and the ledger layout.
    pub const fn name(self) -> &'static str {
        match self {
            Table::Merchants => "merchants",
            Table::StoreEvents => "store_events",
            Table::Products => "products",
            Table::Contracts => "contracts",
            Table::EscrowEvents => "escrow_events",
            Table::WalletFlows => "wallet_flows",
            Table::Operations => "operations",
            Table::Promotions => "promotions",
            Table::Complaints => "complaints",
            Table::PublicRecords => "public_records",
            Table::Loans => "loans",
            Table::BureauRecords => "bureau_records",
        }
    }

    /// Looks a table up by name.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// What the table holds.
    pub const fn doc(self) -> &'static str {
        match self {
            Table::Merchants => "Registered merchants (one row per registration record).",
            Table::StoreEvents => "Stores opened and closed.",
            Table::Products => "Prepaid products on sale.",
            Table::Contracts => "Consumer contracts: one prepayment into one 元管家 smart-contract wallet.",
            Table::EscrowEvents => "The escrow ledger: prepayments, redemptions (核销), releases, rejected release requests, refunds, expiries.",
            Table::WalletFlows => "The merchant's own e-CNY wallet: daily spot sales and withdrawals.",
            Table::Operations => "Payroll, social insurance (headcount), utilities and rent, from the local credit platform.",
            Table::Promotions => "Promotions launched on prepaid products (discounts, bonuses, long tenors).",
            Table::Complaints => "Consumer complaints by channel and category.",
            Table::PublicRecords => "Administrative penalties, abnormal-operation listings, lawsuits, court enforcement and dishonest-debtor listings.",
            Table::Loans => "Banks' loans: disbursements, schedules, repayments, month-end days past due.",
            Table::BureauRecords => "What a credit bureau (征信) reports beyond the loans table: month-end debts owed to other banks, microlenders, leasing and factoring companies, and credit inquiries.",
        }
    }

    /// Row rules beyond each column's own type and range (enforced in `rules.rs` and by
    /// reference checks during ingestion).
    pub const fn rules(self) -> &'static [&'static str] {
        match self {
            Table::Merchants => &[
                "RISK_RESERVE and PERFORMANCE_BOND require `guarantee_amount`.",
            ],
            Table::StoreEvents => &["`merchant_id` must be registered."],
            Table::Products => &["`merchant_id` must be registered.", "`units` ≥ 1."],
            Table::Contracts => &[
                "`merchant_id` must be registered; `product_id` must be a product of the same merchant.",
                "`expires_on` is not before the signing date.",
                "A `contract_id` names one contract: a new row under an id the ledger already holds is rejected (`inconsistent`) when its consumer differs or its period overlaps the held one's; the same consumer after that period ends is a renewal.",
            ],
            Table::EscrowEvents => &[
                "`merchant_id` must be registered; `contract_id` must be a contract of the same merchant.",
                "`code` is required and drawn from: PREPAYMENT → prepayment channel (ECNY_YGJ, BANK_CUSTODY, UNSUPERVISED); RELEASE → trigger (PER_UNIT, PER_MONTH, MERCHANT_REQUEST_APPROVED, EXPIRY); RELEASE_REJECTED → reason (NOT_DELIVERED, EXCEEDS_BALANCE); REFUND_REQUESTED → reason (CHANGE_OF_MIND, SERVICE_FAILURE, MERCHANT_CLOSED); REFUND_COMPLETED → source (ESCROW, MERCHANT_WALLET, RISK_RESERVE, INSURER, UNRECOVERED); EXPIRY → disposition (REFUND_TO_CONSUMER, RELEASE_TO_MERCHANT, EXTEND). REDEMPTION takes no code.",
                "PREPAYMENT requires `frozen_amount` ≤ `amount`; REDEMPTION requires `units`.",
            ],
            Table::WalletFlows => &[
                "`merchant_id` must be registered.",
                "SPOT_SALE requires `channel`; WITHDRAWAL requires `dest_account`.",
            ],
            Table::Operations => &[
                "`merchant_id` must be registered.",
                "PAYROLL and SOCIAL_INSURANCE require `headcount` and `on_time`; UTILITY requires `utility_kind` and `usage`; RENT requires `amount` and `on_time`.",
            ],
            Table::Promotions => &[
                "`merchant_id` must be registered; `product_id` must be a product of the same merchant.",
            ],
            Table::Complaints => &[
                "`merchant_id` must be registered; `contract_id`, when given, must be a contract of the same merchant.",
            ],
            Table::PublicRecords => &["`merchant_id` must be registered."],
            Table::Loans => &[
                "`merchant_id` must be registered.",
                "STATUS requires `dpd`; every other kind requires `amount`; DISBURSEMENT also requires `term_months`.",
            ],
            Table::BureauRecords => &[
                "`merchant_id` must be registered.",
                "DEBT_BALANCE requires `amount`; INQUIRY requires `purpose`.",
            ],
        }
    }

    /// The table's columns.
    pub const fn columns(self) -> &'static [Column] {
        match self {
            Table::Merchants => MERCHANTS,
            Table::StoreEvents => STORE_EVENTS,
            Table::Products => PRODUCTS,
            Table::Contracts => CONTRACTS,
            Table::EscrowEvents => ESCROW_EVENTS,
            Table::WalletFlows => WALLET_FLOWS,
            Table::Operations => OPERATIONS,
            Table::Promotions => PROMOTIONS,
            Table::Complaints => COMPLAINTS,
            Table::PublicRecords => PUBLIC_RECORDS,
            Table::Loans => LOANS,
            Table::BureauRecords => BUREAU_RECORDS,
        }
    }

    /// A column by name.
    pub fn column(self, name: &str) -> Option<(usize, &'static Column)> {
        self.columns()
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
    }

    /// The Arrow schema of the source table (what `simulate` writes), with the given scale
    /// for money columns (2 for clean exports). Every field is nullable: whether a value is
    /// required is a validation rule, checked row by row, not a property of a file that
    /// would make a whole delivery unreadable.
    pub fn source_schema(self, money_scale: i8) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns()
            .iter()
            .map(|c| Field::new(c.name, arrow_type(c.ty, money_scale), true))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// The Arrow schema of the table in the ledger: the source columns plus knowledge-time
    /// columns `_batch`, `_ingested_at` and `_row_digest`.
    pub fn ledger_schema(self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .columns()
            .iter()
            .map(|c| Field::new(c.name, arrow_type(c.ty, 2), !c.required))
            .collect();
        fields.push(Field::new(BATCH_COL, DataType::Utf8, false));
        fields.push(Field::new(INGESTED_AT_COL, timestamp_type(), false));
        fields.push(Field::new(DIGEST_COL, DataType::UInt64, false));
        Arc::new(Schema::new(fields))
    }
}

/// Ledger column: the ingestion batch that accepted the row.
pub const BATCH_COL: &str = "_batch";
/// Ledger column: when the row was committed (knowledge time).
pub const INGESTED_AT_COL: &str = "_ingested_at";
/// Ledger column: digest of the row's source values, to tell a duplicate from a conflict.
pub const DIGEST_COL: &str = "_row_digest";

/// The Arrow type of timestamps everywhere in Yuanxin.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some(d::TZ_NAME.into()))
}

/// Precision of money decimals: 18 digits, i.e. up to 10^16 yuan at scale 2.
pub const MONEY_PRECISION: u8 = 18;
/// Precision and scale of ratios.
pub const RATIO_PRECISION: u8 = 9;
/// Scale of ratios: four decimals (basis points).
pub const RATIO_SCALE: i8 = 4;

fn arrow_type(ty: ColType, money_scale: i8) -> DataType {
    match ty {
        ColType::Id | ColType::Text | ColType::Code(_) | ColType::KindCode | ColType::Uscc => {
            DataType::Utf8
        }
        ColType::Money => DataType::Decimal128(MONEY_PRECISION, money_scale),
        ColType::Ratio => DataType::Decimal128(RATIO_PRECISION, RATIO_SCALE),
        ColType::Count => DataType::Int64,
        ColType::Bool => DataType::Boolean,
        ColType::Timestamp => timestamp_type(),
        ColType::Date => DataType::Date32,
    }
}

/// For an escrow event kind, the code list its `code` column must use (None: must be empty).
pub fn escrow_code_list(kind: &str) -> Option<CodeList> {
    use d::EscrowEventKind as K;
    match kind.parse::<K>().ok()? {
        K::Prepayment => Some(list!(d::PrepaymentChannel)),
        K::Release => Some(list!(d::ReleaseTrigger)),
        K::ReleaseRejected => Some(list!(d::ReleaseRejectReason)),
        K::RefundRequested => Some(list!(d::RefundReason)),
        K::RefundCompleted => Some(list!(d::RefundSource)),
        K::Expiry => Some(list!(d::ExpiryDisposition)),
        K::Redemption => None,
    }
}

/// Renders the data model as Markdown (the reference part of `docs/data-model.md`).
pub fn markdown() -> String {
    let mut out = String::new();
    for table in Table::ALL {
        out.push_str(&format!("### `{}`\n\n{}\n\n", table.name(), table.doc()));
        out.push_str("| column | type | required | meaning |\n|---|---|---|---|\n");
        for c in table.columns() {
            let ty = match c.ty {
                ColType::Code(list) => format!("code: {}", list.codes.join(", ")),
                ColType::KindCode => "code (by kind)".to_string(),
                other => type_name(other).to_string(),
            };
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                c.name,
                ty,
                if c.required { "yes" } else { "no" },
                c.doc
            ));
        }
        let bounds: Vec<String> = crate::rules::PLAUSIBLE
            .iter()
            .filter(|b| b.table == table)
            .map(|b| b.describe())
            .collect();
        if !table.rules().is_empty() || !bounds.is_empty() {
            out.push_str("\nRules:\n");
            for r in table.rules() {
                out.push_str(&format!("- {r}\n"));
            }
            for b in bounds {
                out.push_str(&format!("- {b}\n"));
            }
        }
        out.push('\n');
    }
    out
}

fn type_name(ty: ColType) -> &'static str {
    match ty {
        ColType::Id => "id",
        ColType::Text => "text",
        ColType::Code(_) | ColType::KindCode => "code",
        ColType::Uscc => "credit code (GB 32100)",
        ColType::Money => "money (yuan, ≥ 0, 2 dp)",
        ColType::Ratio => "ratio (0–1, 4 dp)",
        ColType::Count => "count (integer ≥ 0)",
        ColType::Bool => "bool",
        ColType::Timestamp => "timestamp (+08:00)",
        ColType::Date => "date",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_starts_with_the_event_keys() {
        for t in Table::ALL {
            let names: Vec<_> = t.columns().iter().take(3).map(|c| c.name).collect();
            assert_eq!(names, ["event_id", "merchant_id", "ts"], "{}", t.name());
            assert_eq!(Table::from_name(t.name()), Some(t));
            let mut seen = std::collections::HashSet::new();
            for c in t.columns() {
                assert!(
                    seen.insert(c.name),
                    "duplicate column {} in {}",
                    c.name,
                    t.name()
                );
            }
        }
    }
}
