//! "Nothing lost" (issue 17) in its short form: one pass of the fault schedule (OpenIM hangs,
//! restarts, drops connections after handling, answers 500, slowly and late) while six users send
//! through `/v1`, the relayed `/openim/ws` and `/openim/msg/send_msg`; the driver and its checks
//! are `e2e::soak`, whose long form is `cargo bench -p e2e --bench soak`.

use e2e::soak::{self, Path, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_with_faults_loses_nothing() {
    let report = soak::run(&Settings::short()).await;
    println!("{report}");
    assert!(report.problems.is_empty(), "something was lost, duplicated or unaudited:\n{report}");

    // Not vacuous: the schedule produced each kind of answer the checks are about.
    let v1 = report.path(Path::V1);
    assert!(v1.accepted > 0, "v1 sends went through between the faults:\n{report}");
    assert!(v1.unknown_total() > 0, "the hang, the 500s and the restart left v1 sends unknown:\n{report}");
    assert!(v1.unknown_stored > 0, "a send OpenIM stored before dropping the connection:\n{report}");
    assert!(v1.refused.contains_key("bad_request"), "a forbidden body field is refused:\n{report}");
    assert!(v1.refused.contains_key("rate_limited"), "the bursts ran into the send quota:\n{report}");
    let ws = report.path(Path::OpenimWs);
    assert!(ws.accepted > 0 && ws.refused_total() > 0, "SDK sends went through and were refused:\n{report}");
    assert!(
        report.ws.closed_by_relay.get(&1011).is_some_and(|n| *n >= 1),
        "the restart closed the relayed sockets with 1011 (OpenIM connection lost):\n{report}"
    );
    assert!(report.ws.opened > report.users as u64, "the SDK clients reconnected after the restart:\n{report}");
    let http = report.path(Path::OpenimHttp);
    assert!(
        http.attempted > 0 && http.refused_total() == http.attempted,
        "POST /openim/msg/send_msg is refused by design:\n{report}"
    );
    assert!(report.audit_records > 0);
}
