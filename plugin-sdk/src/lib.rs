//! The Rust SDK for imgate policy plugins: implement one trait, call one macro, get a component.
//!
//! A plugin is a WebAssembly component exporting the `imgate:plugin@0.1.0` world (`wit/plugin.wit`).
//! This crate hides the generated bindings behind the [`Plugin`] trait, whose hooks all default to
//! "go on unchanged", and the [`export!`] macro, and wraps each host capability in a module of safe
//! functions: [`log`], [`clock`], [`config`], [`kv`], [`openim`].
//!
//! ```no_run
//! use imgate_plugin_sdk::{Plugin, Request, RequestVerdict};
//! struct Hello;
//! impl Plugin for Hello {
//!     fn on_request(req: &Request) -> RequestVerdict {
//!         if req.header("x-hello").is_some() { return RequestVerdict::Proceed; }
//!         RequestVerdict::reject(403, "no_hello", "say hello first")
//!     }
//! }
//! imgate_plugin_sdk::export!(Hello);
//! ```
//!
//! Build it as a `cdylib` with `cargo build --release --target wasm32-wasip2`.
//!
//! # Capabilities
//!
//! Each host interface is a capability that imgate's configuration grants per plugin; a plugin
//! importing an interface it was not granted is refused when it is loaded. A component imports
//! only the interfaces whose functions it calls, and nothing in this crate calls a host function
//! on its own: using [`kv`] is what makes a plugin need `kv`, and a plugin that calls none of the
//! modules needs no capability at all.
//!
//! # Lifecycle
//!
//! imgate calls [`Plugin::init`] once per (route, plugin) when its configuration is loaded, then
//! [`Plugin::on_request`] before the route runs and [`Plugin::on_response`] after it, each time in a
//! fresh instance: statics and memory never survive from one call to the next. The route's
//! configuration is an argument of `init` only; a hook that needs it calls [`config::get`].

mod types;

pub mod clock;
pub mod config;
pub mod kv;
pub mod log;
pub mod openim;

pub use config::Config;
pub use types::{
    AdminPrincipal, Header, HostError, Modification, Principal, Rejection, Request, RequestVerdict, Response,
    ResponseVerdict, UserPrincipal,
};

/// The bindings `wit-bindgen` generates from `wit/plugin.wit`; use the re-exports instead.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "imgate_plugin_sdk::bindings",
        // Plugin authors compare verdicts in their unit tests.
        additional_derives: [PartialEq, Eq],
    });
}

/// A policy plugin. Every hook has a default that lets the request or response through
/// unchanged, so a plugin implements only the hooks it needs.
///
/// The hooks are associated functions, not methods: each call runs in a fresh instance, so there
/// is no `self` to keep anything in.
pub trait Plugin {
    /// Checks the route's configuration of this plugin (a JSON text, `{}` when there is none)
    /// when imgate loads it; an `Err` refuses the configuration with that message.
    fn init(config: &Config) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// Runs before the route: let the request through, change its body or headers, reject it or
    /// answer it directly.
    fn on_request(request: &Request) -> RequestVerdict {
        let _ = request;
        RequestVerdict::Proceed
    }

    /// Runs after the route (or after an earlier plugin answered): keep or replace the response.
    fn on_response(request: &Request, response: &Response) -> ResponseVerdict {
        let _ = (request, response);
        ResponseVerdict::Proceed
    }
}

/// Exports a type implementing [`Plugin`] as the component's `plugin` world. Call it once, at the
/// top level of the plugin crate:
///
/// ```text
/// imgate_plugin_sdk::export!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        const _: () = {
            // The generated export macro takes an identifier, hence the alias.
            type __ImgatePluginExport = $crate::__private::Adapter<$plugin>;
            $crate::bindings::__export_plugin! { __ImgatePluginExport with_types_in $crate::bindings }
        };
    };
}

/// Declares the JSON Schema of the plugin's per-route configuration. It is embedded in the
/// component (a custom section, `imgate:config-schema`), and imgate records it in the version's
/// manifest, shown by `GET /v1/admin/plugins/{name}` and `imgate plugin status`, so operators
/// see what a route config may hold before they write one. It documents; [`Plugin::init`] is still
/// what accepts or refuses a configuration. At most once per plugin, at the top level:
///
/// ```text
/// imgate_plugin_sdk::config_schema!(r#"{"type": "object", "required": ["words"]}"#);
/// ```
#[macro_export]
macro_rules! config_schema {
    ($schema:literal) => {
        const _: () = {
            const SCHEMA: &str = $schema;
            #[used]
            #[link_section = "imgate:config-schema"]
            static IMGATE_CONFIG_SCHEMA: [u8; SCHEMA.len()] = {
                let (bytes, mut out, mut i) = (SCHEMA.as_bytes(), [0u8; SCHEMA.len()], 0);
                while i < bytes.len() {
                    out[i] = bytes[i];
                    i += 1;
                }
                out
            };
        };
    };
}

/// Declares which hooks the plugin implements: imgate then calls only those, and answers the
/// others with `proceed` itself, without an instance or a copy of the request or response (a
/// plugin that only checks requests costs half as much). Without `hooks!` every hook is called.
/// `init` is always called. At most once per plugin, at the top level:
///
/// ```text
/// imgate_plugin_sdk::hooks!(on_request);
/// imgate_plugin_sdk::hooks!(on_request, on_response);
/// ```
///
/// Declare every hook the plugin overrides: one left out is never called.
#[macro_export]
macro_rules! hooks {
    ($($hook:ident),+ $(,)?) => {
        const _: () = {
            const HOOKS: &str = concat!($($crate::__hook_name!($hook), " "),+);
            #[used]
            #[link_section = "imgate:hooks"]
            static IMGATE_HOOKS: [u8; HOOKS.len()] = {
                let (bytes, mut out, mut i) = (HOOKS.as_bytes(), [0u8; HOOKS.len()], 0);
                while i < bytes.len() {
                    out[i] = bytes[i];
                    i += 1;
                }
                out
            };
        };
    };
}

/// The names [`hooks!`] accepts (anything else does not compile); not part of the API.
#[doc(hidden)]
#[macro_export]
macro_rules! __hook_name {
    (on_request) => {
        "on_request"
    };
    (on_response) => {
        "on_response"
    };
}

/// What [`export!`] expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    use std::marker::PhantomData;

    use super::*;

    /// Bridges a [`Plugin`] to the generated `Guest` trait. Adds no host call of its own, so it
    /// imports nothing the plugin does not use.
    pub struct Adapter<P>(PhantomData<P>);

    impl<P: Plugin> bindings::Guest for Adapter<P> {
        fn init(config: String) -> Result<(), String> {
            P::init(&Config::new(config))
        }

        fn on_request(request: Request) -> RequestVerdict {
            P::on_request(&request)
        }

        fn on_response(request: Request, response: Response) -> ResponseVerdict {
            P::on_response(&request, &response)
        }
    }
}
