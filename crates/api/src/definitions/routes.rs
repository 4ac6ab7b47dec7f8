//! The handlers of a definition kind, written once: each macro expands to the kind's
//! axum handlers with their OpenAPI descriptions (path, tag, bodies, answers), which
//! `utoipa` needs as literal attributes on concrete functions. The handlers only extract
//! the request and call the generic operations of [`crate::definitions`].
//!
//! A route module invokes them with its view type, its list-parameters type and its
//! paths, then registers `list`, `get_one`, `get_by_ref`, `create`, `update` and `delete`
//! with `routes!`.

/// `GET /api/v1/<kind>s`, `GET /api/v1/<kind>s/{id}`, `GET /api/v1/<kind>s/ref/{ref}`.
#[rustfmt::skip]
macro_rules! read_routes {
    (view: $view:ident, params: $params:ident, tag: $tag:literal, what: $what:literal,
     list: $list:literal, one: $one:literal, by_ref: $by_ref:literal) => {
        #[doc = concat!("The ", $what, "s the caller can see (its own and the system packs'), in ref order.")]
        #[utoipa::path(get, path = $list, tag = $tag, params($params), security(("bearer" = [])),
            responses((status = 200, body = Page<$view>), (status = 400), (status = 401)))]
        async fn list(
            axum::extract::State(state): axum::extract::State<ApiState>,
            who: Principal,
            $crate::extract::ApiQuery(mut q): $crate::extract::ApiQuery<$params>,
        ) -> Result<axum::Json<Page<$view>>, ApiError> {
            let (limit, offset) = (q.limit.take(), q.offset.take());
            $crate::definitions::list(&state, &who, q, limit, offset).await
        }

        #[doc = concat!("One ", $what, " by id.")]
        #[utoipa::path(get, path = $one, tag = $tag, params(("id" = i64, Path)), security(("bearer" = [])),
            responses((status = 200, body = $view), (status = 401), (status = 404)))]
        async fn get_one(
            axum::extract::State(state): axum::extract::State<ApiState>,
            who: Principal,
            $crate::extract::ApiPath(id): $crate::extract::ApiPath<i64>,
        ) -> Result<axum::Json<$view>, ApiError> {
            $crate::definitions::get(&state, &who, $crate::definitions::Key::Id(id)).await
        }

        #[doc = concat!("One ", $what, " by ref: the tenant's own, else a system pack's.")]
        #[utoipa::path(get, path = $by_ref, tag = $tag, params(("ref" = String, Path)), security(("bearer" = [])),
            responses((status = 200, body = $view), (status = 401), (status = 404)))]
        async fn get_by_ref(
            axum::extract::State(state): axum::extract::State<ApiState>,
            who: Principal,
            $crate::extract::ApiPath(r): $crate::extract::ApiPath<String>,
        ) -> Result<axum::Json<$view>, ApiError> {
            $crate::definitions::get(&state, &who, $crate::definitions::Key::Ref(&r)).await
        }
    };
}

/// `POST /api/v1/<kind>s`.
#[rustfmt::skip]
macro_rules! create_route {
    (view: $view:ident, spec: $spec:ident, tag: $tag:literal, path: $path:literal, doc: $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = $tag, request_body = $spec, security(("bearer" = [])),
            responses((status = 201, body = $view), (status = 400), (status = 401), (status = 403), (status = 409),
                      (status = 422)))]
        async fn create(
            axum::extract::State(state): axum::extract::State<ApiState>,
            who: Principal,
            $crate::extract::ApiJson(spec): $crate::extract::ApiJson<$spec>,
        ) -> Result<(axum::http::StatusCode, axum::Json<$view>), ApiError> {
            $crate::definitions::create(&state, &who, spec).await
        }
    };
}

/// `PATCH /api/v1/<kind>s/{id}` and `DELETE /api/v1/<kind>s/{id}`.
#[rustfmt::skip]
macro_rules! change_routes {
    (view: $view:ident, tag: $tag:literal, path: $path:literal, patch_doc: $patch_doc:literal,
     delete_doc: $delete_doc:literal) => {
        #[doc = $patch_doc]
        #[utoipa::path(patch, path = $path, tag = $tag, params(("id" = i64, Path)), request_body = Object,
            security(("bearer" = [])), responses((status = 200, body = $view), (status = 400), (status = 401),
                (status = 403), (status = 404), (status = 409), (status = 422)))]
        async fn update(
            axum::extract::State(state): axum::extract::State<ApiState>,
            who: Principal,
            $crate::extract::ApiPath(id): $crate::extract::ApiPath<i64>,
            $crate::extract::ApiJson(patch): $crate::extract::ApiJson<serde_json::Value>,
        ) -> Result<axum::Json<$view>, ApiError> {
            $crate::definitions::update(&state, &who, id, patch).await
        }

        #[doc = $delete_doc]
        #[utoipa::path(delete, path = $path, tag = $tag, params(("id" = i64, Path)), security(("bearer" = [])),
            responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 409), (status = 503)))]
        async fn delete(
            axum::extract::State(state): axum::extract::State<ApiState>,
            who: Principal,
            $crate::extract::ApiPath(id): $crate::extract::ApiPath<i64>,
        ) -> Result<axum::http::StatusCode, ApiError> {
            $crate::definitions::delete::<$view>(&state, &who, id).await
        }
    };
}

pub(crate) use {change_routes, create_route, read_routes};
