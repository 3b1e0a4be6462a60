//! Errors as RFC 9457 problem documents. Every error the service answers has a stable,
//! machine-readable `code` from one catalogue ([`Code`]), with its status and its titles in
//! English and Chinese, like the decision reason codes; `detail` says in plain words what
//! was wrong with this request, and `field` names the input at fault.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use yuanxin_store::StoreError;

macro_rules! codes {
    ($($variant:ident => $code:literal, $status:literal, $en:literal, $zh:literal;)*) => {
        /// The catalogue of problem codes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $(
                #[doc = $en]
                $variant,
            )*
        }

        impl Code {
            /// Every code, in catalogue order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The stable code.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// The HTTP status.
            pub fn status(self) -> u16 {
                match self { $(Code::$variant => $status,)* }
            }

            /// The title in English.
            pub fn title_en(self) -> &'static str {
                match self { $(Code::$variant => $en,)* }
            }

            /// The title in Chinese.
            pub fn title_zh(self) -> &'static str {
                match self { $(Code::$variant => $zh,)* }
            }
        }
    };
}

codes! {
    MalformedJson => "malformed_json", 400, "The body is not valid JSON", "请求体不是有效的 JSON";
    Unauthorized => "unauthorized", 401, "A valid API key is required", "需要有效的 API 密钥";
    ForbiddenRole => "forbidden_role", 403, "This role cannot use this route", "该角色无权使用此接口";
    CsrfFailed => "csrf_failed", 403, "The page's anti-forgery token is missing or wrong", "页面防伪令牌缺失或错误";
    NoConsent => "no_consent", 403, "No consent in force for this purpose", "没有该用途的有效授权";
    NotFound => "not_found", 404, "Not found", "未找到";
    UnknownMerchant => "unknown_merchant", 404, "No such merchant", "没有该商户";
    UnknownPrincipal => "unknown_principal", 404, "No such principal", "没有该主体";
    UnknownProduct => "unknown_product", 404, "No such product in the catalogue", "产品目录中没有该产品";
    UnknownModel => "unknown_model", 404, "No such model in the registry", "模型库中没有该模型";
    NoRoute => "no_route", 404, "No such route", "没有该接口";
    MethodNotAllowed => "method_not_allowed", 405, "This route does not take that method", "该接口不支持此方法";
    Conflict => "conflict", 409, "It exists already", "已存在";
    IdempotencyMismatch => "idempotency_mismatch", 409, "The Idempotency-Key was used for another request", "幂等键已用于其他请求";
    PayloadTooLarge => "payload_too_large", 413, "The body is too large", "请求体过大";
    UriTooLong => "uri_too_long", 414, "The URI is too long", "URI 过长";
    UnsupportedMediaType => "unsupported_media_type", 415, "The body must be application/json", "请求体必须是 application/json";
    MissingField => "missing_field", 422, "A required field is missing", "缺少必填字段";
    UnknownField => "unknown_field", 422, "A field this route does not take", "该接口不接受此字段";
    InvalidField => "invalid_field", 422, "A field breaks its rule", "字段不符合规则";
    Unscorable => "unscorable", 422, "The merchant cannot be scored", "该商户无法评分";
    InvalidModel => "invalid_model", 422, "The model file fails its checks", "模型文件未通过校验";
    RateLimited => "rate_limited", 429, "Too many requests", "请求过多";
    HeadersTooLarge => "headers_too_large", 431, "The request headers are too large", "请求头过大";
    Internal => "internal", 500, "Internal error", "内部错误";
    Overloaded => "overloaded", 503, "The service is at its limit", "服务已满负荷";
    Timeout => "timeout", 503, "The request took too long", "请求超时";
    NotReady => "not_ready", 503, "The service is not ready", "服务尚未就绪";
}

/// An error answered as a problem document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// What kind of problem.
    pub code: Code,
    /// What was wrong, in plain words.
    pub detail: String,
    /// The input at fault.
    pub field: Option<String>,
    /// Seconds after which a retry will be accepted (429, 503).
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// A problem of a kind, with its detail.
    pub fn new(code: Code, detail: impl Into<String>) -> ApiError {
        let retry_after = match code {
            Code::Overloaded | Code::Timeout => Some(1),
            Code::NotReady => Some(5),
            _ => None,
        };
        ApiError {
            code,
            detail: detail.into(),
            field: None,
            retry_after,
        }
    }

    /// A field that breaks its rule (422).
    pub fn invalid(field: &str, rule: impl std::fmt::Display) -> ApiError {
        ApiError {
            field: Some(field.to_owned()),
            ..ApiError::new(Code::InvalidField, format!("`{field}` {rule}"))
        }
    }

    /// Names the field at fault.
    pub fn at(self, field: &str) -> ApiError {
        ApiError {
            field: Some(field.to_owned()),
            ..self
        }
    }

    /// 500 with what went wrong (logged, not shown in detail to the client).
    pub fn internal(why: impl std::fmt::Display) -> ApiError {
        ApiError::new(Code::Internal, why.to_string())
    }

    /// 503: not ready.
    pub fn unavailable(why: impl Into<String>) -> ApiError {
        ApiError::new(Code::NotReady, why)
    }

    /// 401.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            Code::Unauthorized,
            "a valid API key is required: Authorization: Bearer yx_<key id>_<secret>",
        )
    }

    /// 429 with the seconds to wait.
    pub fn rate_limited(seconds: u64, whose: &str) -> ApiError {
        ApiError {
            retry_after: Some(seconds.max(1)),
            ..ApiError::new(
                Code::RateLimited,
                format!(
                    "the rate limit of {whose} is exceeded; retry after {} s",
                    seconds.max(1)
                ),
            )
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`https://yuanxin.example/problems/<code>`).
    r#type: String,
    /// The kind of problem, in English.
    title: String,
    /// The kind of problem, in Chinese.
    title_zh: String,
    /// HTTP status.
    status: u16,
    /// What was wrong with this request, in plain words.
    detail: String,
    /// The stable code of the kind of problem.
    code: String,
    /// The input at fault, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

/// The problem code a response carries, for the metrics and the request log.
#[derive(Debug, Clone, Copy)]
pub struct Answered(pub Code);

/// Renders a problem+json response.
pub fn render(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // Internal details are logged, not sent.
    let detail = if e.code == Code::Internal {
        tracing::error!(target: "yuanxin::http", error = %e.detail, "internal error");
        "the service failed to answer; the error is logged".to_owned()
    } else {
        e.detail.clone()
    };
    let body = Problem {
        r#type: format!("https://yuanxin.example/problems/{}", e.code.as_str()),
        title: e.code.title_en().to_owned(),
        title_zh: e.code.title_zh().to_owned(),
        status: status.as_u16(),
        detail,
        code: e.code.as_str().to_owned(),
        field: e.field.clone(),
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut r = (
        status,
        [("content-type", "application/problem+json")],
        bytes,
    )
        .into_response();
    if let Some(s) = e.retry_after {
        r.headers_mut().insert("retry-after", HeaderValue::from(s));
    }
    if e.code == Code::Unauthorized {
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    r.extensions_mut().insert(Answered(e.code));
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        render(&self)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound { .. } => ApiError::new(Code::NotFound, e.to_string()),
            StoreError::UnknownMerchant(_) => ApiError::new(Code::UnknownMerchant, e.to_string()),
            StoreError::Conflict(_) => ApiError::new(Code::Conflict, e.to_string()),
            StoreError::Invalid(_) => ApiError::new(Code::InvalidField, e.to_string()),
            StoreError::IdempotencyMismatch => {
                ApiError::new(Code::IdempotencyMismatch, e.to_string()).at("Idempotency-Key")
            }
            StoreError::Missing(_)
            | StoreError::TooNew { .. }
            | StoreError::TooOld { .. }
            | StoreError::Unavailable(_) => ApiError::unavailable(e.to_string()),
            StoreError::Database(_)
            | StoreError::Io { .. }
            | StoreError::Secrets(_)
            | StoreError::Damaged(_) => ApiError::internal(e),
        }
    }
}

/// The problem catalogue as Markdown (for docs/service.md).
pub fn catalogue_markdown() -> String {
    let mut out = String::from("| code | status | title | 标题 |\n|---|---|---|---|\n");
    for c in Code::ALL {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            c.as_str(),
            c.status(),
            c.title_en(),
            c.title_zh()
        ));
    }
    out
}
