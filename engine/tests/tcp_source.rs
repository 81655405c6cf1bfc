//! A job reading newline-delimited JSON from a TCP client through io_uring.
#![allow(clippy::disallowed_methods)] // helper threads play clients and observers

use std::io::Write;
use std::time::{Duration, Instant};

use sluice_engine::builder::StreamEnv;
use sluice_engine::record::{DataType, Field};
use sluice_engine::source::Format;
use sluice_engine::spec::SourceSpec;

#[test]
fn a_tcp_job_ends_when_its_connection_closes() {
    // Ask the OS for a free port, then give it to the job.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let env = StreamEnv::new("tcp")
        .parallelism(2)
        .source(SourceSpec::Tcp {
            addr: addr.clone(),
            format: Format::Ndjson,
            fields: vec![
                Field::new("word", DataType::String),
                Field::new("n", DataType::Int),
            ],
            connections: 1,
        })
        .key_by("word")
        .aggregate(&["sum(n) AS total"])
        .collect();
    let job = std::thread::spawn(move || env.execute());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        match std::net::TcpStream::connect(&addr) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "job never listened: {e}");
                std::thread::park_timeout(Duration::from_millis(10));
            }
        }
    };
    for i in 0..1000 {
        writeln!(stream, "{{\"word\":\"w{}\",\"n\":{i}}}", i % 3).unwrap();
    }
    stream.write_all(b"garbage\n").unwrap();
    drop(stream);
    let report = job.join().unwrap().unwrap();
    let mut rows: Vec<String> = report
        .collected_rows()
        .iter()
        .map(|r| format!("{}={}", r[0], r[1]))
        .collect();
    rows.sort();
    // 0..1000 split by i % 3: sums of 0,3,..,999 / 1,4,..,997 / 2,5,..,998.
    assert_eq!(rows, ["w0=166833", "w1=166167", "w2=166500"]);
    assert_eq!(report.dead_letters, 1);
    // Connections are numbered from 1 in accept order; `garbage` is line 1001.
    let position = &report.dead_letter_samples[0].position;
    assert!(
        position.ends_with("#1: byte 21890 (line 1001)"),
        "{position}"
    );
}
