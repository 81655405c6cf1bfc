//! Which failures a client retries, moves on from, or reports as unknown.

use super::*;

fn outcome(status: Status, kind: Kind) -> &'static str {
    match MasterClient::classify::<()>("m:1", status, kind) {
        Outcome::Done(()) => "done",
        Outcome::Redirect(_) => "redirect",
        Outcome::Next(_) => "next",
        Outcome::Wait(_) => "wait",
        Outcome::Retry(_) => "retry",
        Outcome::Fail(ClientError::OutcomeUnknown { .. }) => "unknown",
        Outcome::Fail(_) => "failed",
    }
}

#[test]
fn only_writes_cut_off_mid_way_have_an_unknown_outcome() {
    let timeout = || Status::deadline_exceeded("not committed within 5000 ms");
    let reset = || Status::unavailable("error reading a body from connection: reset");
    assert_eq!(outcome(timeout(), Kind::Write), "unknown");
    assert_eq!(outcome(reset(), Kind::Write), "unknown");
    assert_eq!(outcome(timeout(), Kind::Idempotent), "next");
    assert_eq!(outcome(reset(), Kind::Idempotent), "next");
    let refused = || Status::unavailable("tcp connect error: Connection refused (os error 111)");
    assert_eq!(outcome(refused(), Kind::Write), "next", "never sent");
    let mut no_quorum = Status::unavailable("no quorum: ...");
    no_quorum.metadata_mut().insert(
        NO_QUORUM_KEY,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    assert_eq!(
        outcome(no_quorum, Kind::Write),
        "retry",
        "refused: nothing done"
    );
    assert_eq!(
        outcome(Status::invalid_argument("bad"), Kind::Write),
        "failed"
    );
}
