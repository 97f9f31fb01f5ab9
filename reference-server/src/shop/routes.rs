//! The shop's HTTP handlers (docs/SHOP_API.md). Each one validates its
//! input, calls the store and the CPU-bound work inline, and answers JSON;
//! every refusal is `{"error": ...}` with a 4xx, including the ones axum's
//! extractors would answer in plain text. Not for: connections, worker ids
//! or draining (the worker layer's job).

use std::hint::black_box;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Shop;
use super::cpu;
use super::model::{self, AddItem, CheckoutBody, MAX_ID_LEN, MAX_QTY, ProductView};
use super::store::{PlaceOrder, StoreError};

/// Largest `per_page`.
pub const MAX_PER_PAGE: u64 = 100;
const DEFAULT_PER_PAGE: u64 = 20;

/// An error answer: a status and `{"error": message, ...}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self { status, body: json!({ "error": msg.into() }) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was never read, so this connection cannot
            // carry another request; say so, or a keep-alive client reuses
            // it and its next request meets the close.
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::UnknownSku(_) => StatusCode::NOT_FOUND,
            StoreError::CartFull { .. } | StoreError::KeyReused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            StoreError::Busy(_) | StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Db(_) | StoreError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            eprintln!("[shop] {e}");
        }
        Self::new(status, e.to_string())
    }
}

/// `axum::Json` whose rejections (400 bad JSON, 422 wrong shape or unknown
/// field, 415 not JSON, 413 too large) answer in JSON.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rej) => Err(ApiError::new(rej.status(), rej.body_text())),
        }
    }
}

/// `axum::extract::Path` answering its rejections in JSON.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Self(v)),
            Err(rej) => Err(ApiError::new(rej.status(), rej.body_text())),
        }
    }
}

/// `axum::extract::Query` answering its rejections in JSON.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(rej) => Err(ApiError::new(rej.status(), rej.body_text())),
        }
    }
}

/// The shop's public routes over `shop`.
pub fn router(shop: Shop) -> Router {
    let max_body = shop.max_body;
    Router::new()
        .route("/products", get(list_products))
        .route("/products/{sku}", get(get_product))
        .route("/carts/{cart_id}", get(get_cart))
        .route("/carts/{cart_id}/items", post(add_item))
        .route("/carts/{cart_id}/items/{sku}", delete(remove_item))
        .route("/checkout", post(checkout))
        .route("/orders/{order_id}", get(get_order))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(shop)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route (see docs/SHOP_API.md)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route (see the Allow header)")
}

fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    if model::valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{what} must be 1 to {MAX_ID_LEN} visible ASCII characters without '/'"),
        ))
    }
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    page: Option<u64>,
    per_page: Option<u64>,
}

async fn list_products(State(shop): State<Shop>, ApiQuery(q): ApiQuery<PageQuery>) -> Result<Response, ApiError> {
    let page = q.page.unwrap_or(1);
    let per_page = q.per_page.unwrap_or(DEFAULT_PER_PAGE);
    if page == 0 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "page starts at 1"));
    }
    if per_page == 0 || per_page > MAX_PER_PAGE {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("per_page must be 1 to {MAX_PER_PAGE}")));
    }
    Ok(Json(shop.store.products(page, per_page)?).into_response())
}

async fn get_product(State(shop): State<Shop>, ApiPath(sku): ApiPath<String>) -> Result<Response, ApiError> {
    let Some(product) = shop.store.product(&sku)? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("unknown sku {sku:?}")));
    };
    black_box(cpu::inventory_check(&product.sku, product.stock_left, shop.inventory_cost));
    let in_stock = product.stock_left > 0;
    Ok(Json(ProductView { product, in_stock }).into_response())
}

async fn get_cart(State(shop): State<Shop>, ApiPath(cart_id): ApiPath<String>) -> Result<Response, ApiError> {
    check_id("cart id", &cart_id)?;
    Ok(Json(shop.store.cart(&cart_id)?).into_response())
}

async fn add_item(
    State(shop): State<Shop>,
    ApiPath(cart_id): ApiPath<String>,
    ApiJson(item): ApiJson<AddItem>,
) -> Result<Response, ApiError> {
    check_id("cart id", &cart_id)?;
    if !(1..=MAX_QTY).contains(&item.qty) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("qty must be 1 to {MAX_QTY} (got {})", item.qty),
        ));
    }
    Ok(Json(shop.store.set_line(&cart_id, &item.sku, item.qty)?).into_response())
}

async fn remove_item(
    State(shop): State<Shop>,
    ApiPath((cart_id, sku)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    check_id("cart id", &cart_id)?;
    if shop.store.product(&sku)?.is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("unknown sku {sku:?}")));
    }
    Ok(Json(shop.store.remove_line(&cart_id, &sku)?).into_response())
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";

async fn checkout(
    State(shop): State<Shop>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CheckoutBody>,
) -> Result<Response, ApiError> {
    check_id("cart_id", &body.cart_id)?;
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => {
            let k = v.to_str().unwrap_or("");
            check_id("Idempotency-Key", k)?;
            Some(k)
        }
    };
    let cart_id = body.cart_id.as_str();
    // A retry of a finished checkout is answered without pricing it again.
    if let Some(k) = key {
        if let Some(done) = shop.store.replay(k, cart_id)? {
            return Ok(outcome_response(done.status, done.body, true));
        }
    }
    // Price outside the store's write lock: the costly part of a checkout
    // must not serialise the other workers' checkouts behind it.
    let priced = shop.store.cart_for_pricing(cart_id)?;
    let cost = shop.pricing_cost;
    // An empty cart is refused without burning the pricing cost on it.
    let pricing = cpu::price(&priced, if priced.is_empty() { 0 } else { cost });
    let reprice = move |lines: &[cpu::PriceLine]| cpu::price(lines, cost);
    let outcome = shop.store.place_order(PlaceOrder {
        cart_id,
        idempotency_key: key,
        priced: &priced,
        pricing,
        reprice: &reprice,
    })?;
    Ok(outcome_response(outcome.status, outcome.body, outcome.replayed))
}

/// A recorded checkout answer, byte for byte.
fn outcome_response(status: u16, body: String, replayed: bool) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp =
        (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
    if replayed {
        resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

async fn get_order(State(shop): State<Shop>, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    let Ok(order_id) = id.parse::<i64>() else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("order id must be an integer (got {id:?})")));
    };
    match shop.store.order(order_id)? {
        Some(order) => Ok(Json(order).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no order {order_id}"))),
    }
}
