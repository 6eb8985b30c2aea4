//! What the route engine costs per request, without the OpenIM call: a table route's input
//! typed and checked, its OpenIM request built from the template (`engine::prepare`), and, for a
//! history route, OpenIM's answer filtered and shaped (`engine::finish`) — everything a table
//! route does on the gateway's side of the call. Run with `make bench`.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)] // test code: a panic is a failure

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use host::auth::Caller;
use host::routes::engine::{finish, prepare, CompiledRoute};
use host::routes::table::default_routes;
use serde_json::{json, Value};

fn route(name: &str) -> CompiledRoute {
    CompiledRoute::compile(&default_routes().into_iter().find(|r| r.name == name).expect("a default route"))
        .expect("compiles")
}

fn caller() -> Caller {
    Caller {
        user_id: "alice".into(),
        platform_id: 5,
        device_id: "laptop".into(),
        session_id: "s".repeat(32),
        session_expires_at_ms: i64::MAX,
        tier: "standard".into(),
    }
}

/// A pull_msg_by_seq answer with 20 messages between alice and bob.
fn history_data() -> Value {
    let msgs: Vec<Value> = (1..=20)
        .map(|seq| {
            let (from, to) = if seq % 2 == 0 { ("alice", "bob") } else { ("bob", "alice") };
            json!({"seq": seq, "serverMsgID": format!("srv-{seq}"), "clientMsgID": format!("cli-{seq}"),
                   "sendID": from, "recvID": to, "sessionType": 1, "contentType": 101,
                   "content": "{\"content\":\"hello there\"}", "sendTime": 1_700_000_000_000i64 + seq})
        })
        .collect();
    json!({"msgs": {"si_alice_bob": {"Msgs": msgs, "isEnd": true}}, "notificationMsgs": {}})
}

fn bench(c: &mut Criterion) {
    let send = route("send_text_to_user");
    let history = route("history_with_user");
    let who = caller();
    let data = history_data();
    let mut g = c.benchmark_group("route_engine");
    g.bench_function("send_text_to_user_prepare", |b| {
        b.iter(|| {
            prepare(&send, &who, vec![("peer".into(), "bob".into())], None, br#"{"text":"hello bob"}"#).expect("ok")
        })
    });
    g.bench_function("history_with_user_prepare_finish", |b| {
        b.iter_batched(
            || data.clone(),
            |mut d| {
                let p = prepare(&history, &who, vec![("peer".into(), "bob".into())], Some("from=1&to=20"), b"")
                    .expect("ok");
                finish(&history, &who, p.peer.as_deref(), &mut d).expect("shaped")
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
