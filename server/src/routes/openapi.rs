//! `GET /openapi.json`: OpenAPI 3.1, generated from the handlers' annotations and types.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{crypto, keys, registrations, schema, system, vouchers};

#[derive(OpenApi)]
#[openapi(
    info(title = "vouchsafe key server", description = "Keys, data keys, decryption, vouchers, status lists and JWKS for social-protection registries. Errors are {\"error\":{\"code\",\"message\"}}."),
    paths(
        keys::create, keys::list, keys::show, keys::rotate, keys::set_state,
        crypto::datakey, crypto::unwrap, crypto::decrypt, crypto::rewrap, crypto::public,
        vouchers::issue, vouchers::batch, vouchers::redeem, vouchers::revoke, vouchers::status_lists, vouchers::status_list,
        system::jwks, system::audit, system::healthz, system::readyz,
        registrations::submit, registrations::list, registrations::show,
    ),
    components(schemas(schema::ErrorBody, schema::KeyView, schema::DataKeyResponse, schema::Plaintext)),
    modifiers(&Bearer),
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A static API token, or an OIDC access token (JWT) from the configured identity provider",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
