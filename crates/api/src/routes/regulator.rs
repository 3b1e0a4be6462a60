//! Regulators (task 七 of the plan): the pilot's monthly figures and watch list, as
//! `yuanxin report monthly` computed them into `DATA/reports/`, limited to the key's
//! district for a district regulator. No consent is needed (supervision is statutory), and
//! every access is in the query log like any other: a report read is one entry (about the
//! scope, `_scope.CITY` or `_scope.FUTIAN`), a page of the watch list one entry per merchant
//! on it, so a merchant sees in its own query history that a regulator looked at its entry.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use yuanxin_domain::{District, MerchantId};
use yuanxin_engine::monitor::{read_report, report_folder, MonthlyReport};
use yuanxin_store::{LogRecord, Outcome, Purpose};

use super::lender::limit;
use super::merchant::number_cursor;
use super::{json_bytes, respond, with_receipt, RegulatorCaller};
use crate::input::{Fields, FromFields, Query};
use crate::problem::{ApiError, Code};
use crate::AppState;

/// A report file's identity: modification time and length.
type FileStamp = Option<(SystemTime, u64)>;

/// The reports read lately, by month, with the identity of the file they came from.
#[derive(Debug, Default)]
pub struct ReportCache(Mutex<Vec<(String, FileStamp, Arc<MonthlyReport>)>>);

/// Months kept in memory.
const CACHED: usize = 4;

fn poisoned<T>(_: T) -> ApiError {
    ApiError::internal("report cache lock poisoned")
}

impl ReportCache {
    /// The city's report of `month`, from memory while its file is unchanged.
    fn get(&self, reports: &std::path::Path, month: &str) -> Result<Arc<MonthlyReport>, ApiError> {
        let path = report_folder(reports, month, None).join("report.json");
        let stamp = std::fs::metadata(&path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        {
            let cache = self.0.lock().map_err(poisoned)?;
            if let Some((_, _, r)) = cache.iter().find(|(m, s, _)| m == month && *s == stamp) {
                return Ok(Arc::clone(r));
            }
        }
        let report = read_report(reports, month)
            .map_err(|e| ApiError::internal(e.to_string()))?
            .ok_or_else(|| {
                ApiError::new(
                    Code::NotFound,
                    format!(
                        "no monthly report for {month} yet (the platform writes it with `yuanxin report monthly --month {month}`)"
                    ),
                )
                .at("month")
            })?;
        let report = Arc::new(report);
        let mut cache = self.0.lock().map_err(poisoned)?;
        cache.retain(|(m, _, _)| m != month);
        cache.push((month.to_owned(), stamp, Arc::clone(&report)));
        if cache.len() > CACHED {
            cache.remove(0);
        }
        Ok(report)
    }
}

/// Which page of the list of reports.
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportsQuery {
    /// Items per page (1–500, default 50).
    pub limit: Option<u32>,
    /// The previous page's `next_cursor` (a month: the page holds earlier ones).
    #[param(pattern = r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])$")]
    pub cursor: Option<String>,
}

/// The checked query.
#[derive(Debug)]
pub struct ReportsPageRequest {
    limit: u32,
    before: Option<String>,
}

impl FromFields for ReportsPageRequest {
    const FIELDS: &'static [&'static str] = &["limit", "cursor"];
    fn from_fields(f: &mut Fields, _: &AppState) -> Result<Self, ApiError> {
        let limit = limit(f)?;
        let before = match f.text("cursor", 7)? {
            Some(c) => Some(checked_month("cursor", c)?),
            None => None,
        };
        Ok(ReportsPageRequest { limit, before })
    }
}

/// The months with a city report, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportsPage {
    /// Months, `YYYY-MM`.
    pub items: Vec<String>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/regulator/reports", tag = "regulator",
    params(ReportsQuery),
    security(("api_key" = [])),
    responses((status = 200, body = ReportsPage, description = "The months with a monthly report, newest first; the access is logged")))]
pub(super) async fn reports(
    State(st): State<AppState>,
    c: RegulatorCaller,
    Query(q): Query<ReportsPageRequest>,
) -> Result<Response, ApiError> {
    let district = scope(&c)?;
    let dir = reports_dir(&st);
    let mut months = tokio::task::spawn_blocking(move || -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let m = name.strip_prefix("monthly-")?.to_owned();
                (m.len() == 7 && e.path().join("report.json").is_file()).then_some(m)
            })
            .collect()
    })
    .await
    .map_err(|e| ApiError::internal(format!("report task: {e}")))?;
    months.retain(|m| checked_month("month", m.clone()).is_ok());
    months.sort_unstable_by(|a, b| b.cmp(a));
    if let Some(b) = &q.before {
        months.retain(|m| m < b);
    }
    let more = months.len() > q.limit as usize;
    months.truncate(q.limit as usize);
    let body = ReportsPage {
        next_cursor: if more { months.last().cloned() } else { None },
        items: months,
    };
    let bytes = json_bytes(&body)?;
    let digest: Arc<str> = crate::digest(&bytes).into();
    let record = supervision(
        &st,
        &c,
        scope_id(district)?,
        "regulator_reports",
        "",
        digest,
    );
    logged(&st, vec![record], bytes).await
}

/// The log's subject of an aggregate access: `_scope.CITY` or `_scope.<district>`.
fn scope_id(district: Option<District>) -> Result<MerchantId, ApiError> {
    MerchantId::parse(&format!(
        "_scope.{}",
        district.map_or("CITY", District::as_str)
    ))
    .map_err(ApiError::internal)
}

/// What a regulator's key may see: `None` the city, else one district.
fn scope(c: &RegulatorCaller) -> Result<Option<District>, ApiError> {
    // Checked when the principal was created.
    yuanxin_store::regulator_scope(&c.0.principal.code).ok_or_else(|| {
        ApiError::internal("a regulator principal with neither CITY nor a district's code")
    })
}

fn reports_dir(st: &AppState) -> PathBuf {
    st.config
        .reports
        .clone()
        .unwrap_or_else(|| st.config.data.join("reports"))
}

/// Which month.
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// The month, `YYYY-MM` (2000-01 to 2100-12).
    #[param(pattern = r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])$")]
    pub month: String,
}

/// The checked query.
#[derive(Debug)]
pub struct ReportMonth(String);

fn month(f: &mut Fields) -> Result<String, ApiError> {
    checked_month("month", Fields::required(f.text("month", 7)?, "month")?)
}

fn checked_month(field: &str, m: String) -> Result<String, ApiError> {
    let ok = m.len() == 7
        && chrono::NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d")
            .is_ok_and(|d| (2000..=2100).contains(&chrono::Datelike::year(&d)));
    if !ok {
        return Err(ApiError::invalid(
            field,
            "must be a month YYYY-MM from 2000-01 to 2100-12",
        ));
    }
    Ok(m)
}

impl FromFields for ReportMonth {
    const FIELDS: &'static [&'static str] = &["month"];
    fn from_fields(f: &mut Fields, _: &AppState) -> Result<Self, ApiError> {
        Ok(ReportMonth(month(f)?))
    }
}

/// A month's figures for a regulator.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegulatorReportView {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// The district the figures are limited to (none: the whole city).
    pub district: Option<String>,
    /// The figures as `yuanxin report monthly` computed them (its `report.json`, limited
    /// to the district, without the watch list): the knowledge time, the model, the
    /// master scale, and for each month of the trend its district × industry cells
    /// (merchants trading and on 元管家, contracts, prepaid liability and the part escrow
    /// covers, grades, PD sum, complaints, closures owing consumers, alerts by rule) and
    /// loans; the standing offers by district.
    #[schema(value_type = Object)]
    pub figures: serde_json::Value,
    /// Merchants on the watch list (`/v1/regulator/watchlist` pages through them).
    pub watch_count: u64,
}

#[utoipa::path(get, path = "/v1/regulator/report", tag = "regulator",
    params(ReportQuery),
    security(("api_key" = [])),
    responses((status = 200, body = RegulatorReportView, description = "The month's figures, limited to the key's district; the access is logged")))]
pub(super) async fn report(
    State(st): State<AppState>,
    c: RegulatorCaller,
    Query(ReportMonth(m)): Query<ReportMonth>,
) -> Result<Response, ApiError> {
    let district = scope(&c)?;
    let full = load(&st, &m).await?;
    let body = RegulatorReportView {
        month: m,
        district: district.map(|d| d.as_str().to_owned()),
        figures: serde_json::to_value(full.figures(district)).map_err(ApiError::internal)?,
        watch_count: full.watch_in(district).count() as u64,
    };
    let bytes = json_bytes(&body)?;
    let digest: Arc<str> = crate::digest(&bytes).into();
    let record = supervision(
        &st,
        &c,
        scope_id(district)?,
        "regulator_report",
        &full.model_id,
        digest,
    );
    logged(&st, vec![record], bytes).await
}

fn supervision(
    st: &AppState,
    c: &RegulatorCaller,
    merchant_id: MerchantId,
    action: &'static str,
    model_id: &str,
    response_digest: Arc<str>,
) -> LogRecord {
    LogRecord {
        at: (st.now)(),
        request_id: Arc::clone(&c.0.request_id),
        principal: Arc::clone(&c.0.principal),
        key_id: Arc::clone(&c.0.key_id),
        merchant_id,
        action,
        purpose: Purpose::Supervision,
        consent_id: None,
        outcome: Outcome::Served,
        model_id: model_id.into(),
        response_digest,
        seen: None,
    }
}

/// Which page of the watch list.
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WatchQuery {
    /// The month, `YYYY-MM` (2000-01 to 2100-12).
    #[param(pattern = r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])$")]
    pub month: String,
    /// Items per page (1–500, default 50).
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// The checked query.
#[derive(Debug)]
pub struct WatchPageRequest {
    month: String,
    limit: u32,
    from: usize,
}

impl FromFields for WatchPageRequest {
    const FIELDS: &'static [&'static str] = &["month", "limit", "cursor"];
    fn from_fields(f: &mut Fields, _: &AppState) -> Result<Self, ApiError> {
        Ok(WatchPageRequest {
            month: month(f)?,
            limit: limit(f)?,
            from: number_cursor::<i64>(f)?
                .and_then(|c| usize::try_from(c).ok())
                .unwrap_or(0),
        })
    }
}

/// A page of the watch list.
#[derive(Debug, Serialize, ToSchema)]
pub struct WatchPage {
    /// Merchants in the order of the report (closures owing consumers first, then the most
    /// alerts, then the most uncovered liability), each with its district, industry, grade
    /// and PD or closure, prepaid liability, the part escrow does not cover, and the evidence
    /// (each alert's rule in Chinese and English, the value and the threshold).
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<serde_json::Value>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/regulator/watchlist", tag = "regulator",
    params(WatchQuery),
    security(("api_key" = [])),
    responses((status = 200, body = WatchPage, description = "A page of the month's watch list, limited to the key's district; each merchant on the page is a logged access")))]
pub(super) async fn watchlist(
    State(st): State<AppState>,
    c: RegulatorCaller,
    Query(q): Query<WatchPageRequest>,
) -> Result<Response, ApiError> {
    let district = scope(&c)?;
    let full = load(&st, &q.month).await?;
    let visible: Vec<_> = full.watch_in(district).collect();
    let to = q.from.saturating_add(q.limit as usize).min(visible.len());
    let page = visible.get(q.from..to).unwrap_or_default();
    let body = WatchPage {
        items: page
            .iter()
            .map(|w| serde_json::to_value(w).map_err(ApiError::internal))
            .collect::<Result<_, _>>()?,
        next_cursor: (to < visible.len()).then(|| to.to_string()),
    };
    let bytes = json_bytes(&body)?;
    let digest: Arc<str> = crate::digest(&bytes).into();
    let records = page
        .iter()
        .map(|w| {
            let id = MerchantId::parse(&w.merchant_id).map_err(ApiError::internal)?;
            Ok(supervision(
                &st,
                &c,
                id,
                "regulator_watchlist",
                &full.model_id,
                Arc::clone(&digest),
            ))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    logged(&st, records, bytes).await
}

/// Commits the accesses' log entries, then answers with the receipt of the first (an
/// empty page logs nothing and has no receipt).
async fn logged(
    st: &AppState,
    records: Vec<LogRecord>,
    bytes: Vec<u8>,
) -> Result<Response, ApiError> {
    if records.is_empty() {
        return Ok(respond(StatusCode::OK, bytes));
    }
    let n = records.len() as u64;
    let (index, receipt) = st.db.append(records).await?;
    st.metrics.logged("served", n);
    Ok(with_receipt(
        respond(StatusCode::OK, bytes),
        Some(index),
        &receipt,
    ))
}

/// The city's report of `month`, read (or taken from the cache) on the blocking pool.
async fn load(st: &AppState, month: &str) -> Result<Arc<MonthlyReport>, ApiError> {
    let (cache, dir, month) = (st.clone(), reports_dir(st), month.to_owned());
    tokio::task::spawn_blocking(move || cache.reports.get(&dir, &month))
        .await
        .map_err(|e| ApiError::internal(format!("report task: {e}")))?
}
