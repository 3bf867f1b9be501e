//! The route table: every fact about an endpoint in one row, read by the router, the auth
//! check, the response headers, `--help` and the test against `openapi.yaml`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::{Method, Request};

use crate::app::AppState;
use crate::errors::ApiError;
use crate::handlers;
use crate::linger::LingeringBody;
use crate::responses::Reply;

/// What a handler returns.
pub type Answer = Pin<Box<dyn Future<Output = Result<Reply, ApiError>> + Send>>;

/// A handler: the server's state and the request, to its answer.
pub type Handler = fn(Arc<AppState>, Request<LingeringBody>) -> Answer;

/// The methods an endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Methods {
    /// `GET` and `HEAD`.
    Read,
    /// `POST` (uploads).
    Post,
}

impl Methods {
    pub fn accepts(self, method: &Method) -> bool {
        match self {
            Methods::Read => matches!(*method, Method::GET | Method::HEAD),
            Methods::Post => *method == Method::POST,
        }
    }

    /// As the `Allow` header and CORS preflights say them.
    pub fn allow(self) -> &'static str {
        match self {
            Methods::Read => "GET, HEAD",
            Methods::Post => "POST",
        }
    }
}

/// Who may call an endpoint when the server has access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone: the page, the API description and the probes orchestrators send without
    /// credentials.
    Public,
    /// A bearer token: the endpoints that see images or server internals.
    Token,
}

/// How caches may keep an endpoint's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// Nothing said (small JSON status answers).
    Unset,
    /// Kept, but revalidated before each use (`no-cache`): static text.
    Revalidate,
    /// Never stored anywhere (`no-store`): answers about patients' images.
    NoStore,
}

impl Cache {
    pub fn header(self) -> Option<&'static str> {
        match self {
            Cache::Unset => None,
            Cache::Revalidate => Some("no-cache"),
            Cache::NoStore => Some("no-store"),
        }
    }
}

/// One endpoint.
#[derive(Debug)]
pub struct Route {
    /// The exact path; also the route's label in metrics and logs.
    pub path: &'static str,
    pub methods: Methods,
    pub auth: Auth,
    pub cache: Cache,
    /// One line for `--help`.
    pub summary: &'static str,
    pub handler: Handler,
}

/// Every endpoint the server answers.
pub static ROUTES: [Route; 9] = [
    Route {
        path: "/",
        methods: Methods::Read,
        auth: Auth::Public,
        cache: Cache::Revalidate,
        summary: "the web page",
        handler: |state, request| Box::pin(handlers::page(state, request)),
    },
    Route {
        path: "/predict",
        methods: Methods::Post,
        auth: Auth::Token,
        cache: Cache::NoStore,
        summary: "classify one image (multipart field `file`)",
        handler: |state, request| Box::pin(handlers::predict(state, request)),
    },
    Route {
        path: "/predict/batch",
        methods: Methods::Post,
        auth: Auth::Token,
        cache: Cache::NoStore,
        summary: "classify several images (repeat `file`)",
        handler: |state, request| Box::pin(handlers::predict_batch(state, request)),
    },
    Route {
        path: "/explain",
        methods: Methods::Post,
        auth: Auth::Token,
        cache: Cache::NoStore,
        summary: "classify one image and show where the model looked",
        handler: |state, request| Box::pin(handlers::explain(state, request)),
    },
    Route {
        path: "/health",
        methods: Methods::Read,
        auth: Auth::Public,
        cache: Cache::Unset,
        summary: "the original app's health check",
        handler: |state, request| Box::pin(handlers::health(state, request)),
    },
    Route {
        path: "/live",
        methods: Methods::Read,
        auth: Auth::Public,
        cache: Cache::Unset,
        summary: "liveness probe",
        handler: |state, request| Box::pin(handlers::live(state, request)),
    },
    Route {
        path: "/ready",
        methods: Methods::Read,
        auth: Auth::Public,
        cache: Cache::Unset,
        summary: "readiness probe: the model is warm; its name, version and classes",
        handler: |state, request| Box::pin(handlers::ready(state, request)),
    },
    Route {
        path: "/metrics",
        methods: Methods::Read,
        auth: Auth::Token,
        cache: Cache::Revalidate,
        summary: "Prometheus/OpenMetrics text",
        handler: |state, request| Box::pin(handlers::metrics(state, request)),
    },
    Route {
        path: "/openapi.yaml",
        methods: Methods::Read,
        auth: Auth::Public,
        cache: Cache::Revalidate,
        summary: "this API's description",
        handler: |state, request| Box::pin(handlers::openapi(state, request)),
    },
];

/// The label of requests to no endpoint (never the raw path, which a client controls).
pub const OTHER: &str = "other";

/// The endpoint at exactly `path`.
pub fn find(path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.path == path)
}

/// The route's name in metrics and logs.
pub fn label(route: Option<&'static Route>) -> &'static str {
    route.map_or(OTHER, |r| r.path)
}

/// The endpoints as `--help` lists them.
pub fn help() -> String {
    let mut text =
        String::from("Endpoints (token: needs a bearer token when the server has them):\n");
    for route in &ROUTES {
        let method = route.methods.allow().split(',').next().unwrap_or_default();
        let token = match route.auth {
            Auth::Token => "token",
            Auth::Public => "",
        };
        text.push_str(&format!(
            "  {method:<5} {:<15} {token:<6} {}\n",
            route.path, route.summary
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_found_by_its_own_path_and_nothing_else() {
        for route in &ROUTES {
            assert!(std::ptr::eq(find(route.path).unwrap(), route));
        }
        for path in [
            "/predict/",
            "/PREDICT",
            "/other",
            "",
            "/predict/batch/x",
            "other",
        ] {
            assert!(find(path).is_none(), "{path}");
        }
    }

    #[test]
    fn routes_that_see_images_need_tokens_and_are_never_stored() {
        for route in &ROUTES {
            if route.methods == Methods::Post {
                assert_eq!(route.auth, Auth::Token, "{}", route.path);
                assert_eq!(route.cache, Cache::NoStore, "{}", route.path);
            }
        }
    }

    #[test]
    fn help_lists_every_route_with_its_token_rule() {
        let help = help();
        for route in &ROUTES {
            let line = help
                .lines()
                .find(|l| l.split_whitespace().nth(1) == Some(route.path))
                .unwrap_or_else(|| panic!("{} missing from\n{help}", route.path));
            assert_eq!(
                line.contains(" token "),
                route.auth == Auth::Token,
                "{line}"
            );
        }
    }

    #[test]
    fn openapi_yaml_describes_exactly_the_route_table() {
        use yaml_rust2::{Yaml, YamlLoader};
        let text = include_str!("../openapi.yaml");
        let doc = &YamlLoader::load_from_str(text).unwrap()[0];
        let paths = doc["paths"].as_hash().unwrap();
        let described: Vec<&str> = paths.keys().filter_map(Yaml::as_str).collect();
        let mut served: Vec<&str> = ROUTES.iter().map(|r| r.path).collect();
        let mut sorted = described.clone();
        sorted.sort_unstable();
        served.sort_unstable();
        assert_eq!(sorted, served);
        let intro = doc["info"]["description"].as_str().unwrap();
        for route in &ROUTES {
            let item = &doc["paths"][route.path];
            let methods: Vec<&str> = item
                .as_hash()
                .unwrap()
                .keys()
                .filter_map(Yaml::as_str)
                .collect();
            let expected = match route.methods {
                Methods::Read => "get",
                Methods::Post => "post",
            };
            assert_eq!(methods, [expected], "{}", route.path);
            let security = &item[expected]["security"];
            let token = security
                .as_vec()
                .is_some_and(|s| s.iter().any(|r| !r["bearerToken"].is_badvalue()));
            assert_eq!(
                token,
                route.auth == Auth::Token,
                "{}'s security",
                route.path
            );
            let named = intro.contains(&format!("{},", route.path))
                || intro.contains(&format!("{} ", route.path));
            assert_eq!(
                named,
                route.auth == Auth::Token,
                "{} in info.description",
                route.path
            );
        }
    }
}
