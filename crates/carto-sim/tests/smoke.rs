mod common;
use common::*;

#[tokio::test]
async fn start_query_and_drop() {
    let t0 = std::time::Instant::now();
    let sim = TestSim::start_default();
    eprintln!("start took {:?}", t0.elapsed());
    let (s, v) = sql(&sim, "demo", "select name from cities order by cartodb_id").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["rows"][0]["name"], "Madrid");
    assert_eq!(sim.psql_value("demo", "select count(*) from cities").as_deref(), Some("3"));
    let db = sim.database("demo");
    drop(sim);
    eprintln!("total {:?}", t0.elapsed());
    let _ = db;
}
