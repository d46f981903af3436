//! The registry test harness: real registries (plain, TLS with Basic auth, token auth), a token
//! service, a fault-injecting proxy, hermetic command runs and shared fixtures.

pub mod cmd;
pub mod fixtures;
pub mod http;
pub mod proxy;
pub mod registries;
pub mod token;
