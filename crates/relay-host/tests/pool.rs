//! The pooling allocator at the sizes a fleet host runs: more instances alive at
//! once than wasmtime's defaults assume.

use relay_host::sandbox::{Allocation, Limits, Runtime};

/// Every instance of a pool bigger than 1,000 makes a guest call and stays
/// alive. A store keeps its async call stack (a fiber) between calls, so the
/// pool needs a stack per instance; wasmtime's default of 1,000 stacks made the
/// 1,001st tenant of a host fail its first call.
#[tokio::test(flavor = "current_thread")]
async fn a_pool_of_more_than_a_thousand_instances_calls_into_every_one() {
    let n: u32 = 1_100;
    let runtime = Runtime::new(
        Allocation::Pooling {
            max_instances: n + 8,
        },
        Limits::default(),
    )
    .expect("compile");
    let mut alive = Vec::with_capacity(n as usize);
    for i in 0..n {
        let mut sandbox = runtime
            .instantiate(Limits::default())
            .unwrap_or_else(|e| panic!("instance {i} did not instantiate: {e}"));
        let url = sandbox
            .dial_url("https://connector.example")
            .await
            .unwrap_or_else(|e| panic!("instance {i}'s first call failed: {e}"));
        assert!(url.starts_with("wss://connector.example"), "{url}");
        alive.push(sandbox);
    }
    assert_eq!(alive.len(), n as usize);
}
