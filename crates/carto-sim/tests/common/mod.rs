#![allow(unused_imports)]
//! Shared helpers of the integration tests (reqwest straight against a TestSim).
#![allow(dead_code)]
pub use carto_sim::testkit::{self, TestSim, DEMO_MASTER_KEY, DEMO_REGULAR_KEY};
use serde_json::Value;

pub fn client() -> reqwest::Client {
    // no_gzip: the tests look at the raw body even when another crate of the workspace enables reqwest's gzip
    reqwest::Client::builder().no_gzip().build().expect("reqwest client")
}

/// GET /sql with the master key of demo.
pub async fn sql(sim: &TestSim, user: &str, q: &str) -> (u16, Value) {
    let key = sim.master_key(user);
    let r = client().post(sim.sql_url(user)).form(&[("q", q), ("api_key", key.as_str())]).send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

pub fn err_msg(v: &Value) -> String {
    v["error"][0].as_str().unwrap_or_default().to_string()
}
