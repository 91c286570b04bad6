//! Tests of the YCSB generators, mixes, report shape and chart, and an
//! end-to-end run of every workload against an in-process server.

use std::collections::HashMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::generators::*;
use super::report::*;
use super::workload::*;
use crate::cli::YcsbWorkload;

const DRAWS: usize = 100_000;

fn rng() -> SmallRng {
    SmallRng::seed_from_u64(7)
}

// ---- generators ----

#[test]
fn fnv_hash_matches_ycsb() {
    // YCSB's first key is the familiar "user6284781860667377211".
    assert_eq!(fnv_hash64(0), 6_284_781_860_667_377_211);
    assert_eq!(fnv_hash64(1), 8_517_097_267_634_966_620);
    assert_eq!(fnv_hash64(42), 55_488_592_825_689_361);
    assert_eq!(key_name(99_999), b"user7592201923306675823".to_vec());
}

#[test]
fn inserts_are_not_sequential_in_key_order() {
    let keys: Vec<Vec<u8>> = (0..100).map(key_name).collect();
    let ascending = keys.windows(2).filter(|w| w[0] < w[1]).count();
    assert!((20..80).contains(&ascending), "{ascending} of 99 neighbours ascend");
}

#[test]
fn zipfian_head_gets_its_theoretical_share() {
    let n = 1000;
    let gen = Zipfian::new(n, ZIPFIAN_CONSTANT);
    let zetan = zeta(0, n, ZIPFIAN_CONSTANT, 0.0);
    let mut counts = vec![0u64; n as usize];
    let mut rng = rng();
    for _ in 0..DRAWS {
        let item = gen.next(&mut rng);
        assert!(item < n);
        counts[item as usize] += 1;
    }
    let share = |i: usize| counts[i] as f64 / DRAWS as f64;
    let expected0 = 1.0 / zetan;
    let expected1 = 0.5_f64.powf(ZIPFIAN_CONSTANT) / zetan;
    assert!((share(0) - expected0).abs() < 0.005, "item 0: {} vs {expected0}", share(0));
    assert!((share(1) - expected1).abs() < 0.005, "item 1: {} vs {expected1}", share(1));
    // Further down, popularity keeps falling.
    let head: u64 = counts[..10].iter().sum();
    let tail: u64 = counts[990..].iter().sum();
    assert!(counts[0] > counts[1] && counts[1] > counts[10] && head > 10 * tail);
}

#[test]
fn scrambled_zeta_belongs_to_its_item_count() {
    // Sum the first 10^6 terms exactly, then add the tail by the midpoint
    // rule (error far below 1e-6 for terms this smooth).
    let n = 1_000_000u64;
    let theta = ZIPFIAN_CONSTANT;
    let big = SCRAMBLED_ITEM_COUNT as f64;
    let head = zeta(0, n, theta, 0.0);
    let tail = ((big + 0.5).powf(1.0 - theta) - (n as f64 + 0.5).powf(1.0 - theta)) / (1.0 - theta);
    assert!((head + tail - SCRAMBLED_ZETA).abs() < 1e-3, "{} vs {SCRAMBLED_ZETA}", head + tail);
}

#[test]
fn scrambled_zipfian_stays_in_range_and_scatters_the_hot_keys() {
    let items = 10_000;
    let gen = ScrambledZipfian::new(items);
    let mut counts: HashMap<u64, u64> = HashMap::new();
    let mut rng = rng();
    for _ in 0..DRAWS {
        let item = gen.next(&mut rng);
        assert!(item < items);
        *counts.entry(item).or_default() += 1;
    }
    let mut by_popularity: Vec<(u64, u64)> = counts.into_iter().collect();
    by_popularity.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
    // The most popular rank alone has 1 / zeta(10^10) of the draws.
    let top_share = by_popularity[0].1 as f64 / DRAWS as f64;
    assert!((top_share - 1.0 / SCRAMBLED_ZETA).abs() < 0.006, "top key share {top_share}");
    // The ten hottest keys are spread over the key space, not 0..10.
    let hot: Vec<u64> = by_popularity[..10].iter().map(|(k, _)| *k).collect();
    assert!(hot.iter().filter(|&&k| k >= items / 2).count() >= 2, "hot keys {hot:?}");
    assert!(hot.iter().filter(|&&k| k < items / 2).count() >= 2, "hot keys {hot:?}");
}

#[test]
fn latest_prefers_recent_records_and_follows_inserts() {
    let mut gen = SkewedLatest::new(1000);
    let mut rng = rng();
    let newest_tenth = |gen: &mut SkewedLatest, rng: &mut SmallRng, count: u64| {
        let mut recent = 0;
        for _ in 0..DRAWS {
            let k = gen.next(rng, count);
            assert!(k < count);
            recent += u64::from(k >= count - count / 10);
        }
        recent as f64 / DRAWS as f64
    };
    // zeta(100) / zeta(1000) of the draws fall on the newest 100 of 1000.
    let expected = zeta(0, 100, ZIPFIAN_CONSTANT, 0.0) / zeta(0, 1000, ZIPFIAN_CONSTANT, 0.0);
    let share = newest_tenth(&mut gen, &mut rng, 1000);
    assert!((share - expected).abs() < 0.02, "{share} vs {expected}");
    // After 1000 more inserts the newest records are the new ones.
    let share = newest_tenth(&mut gen, &mut rng, 2000);
    assert!(share > 0.6, "{share}");
    assert_eq!(gen.next(&mut rng, 1), 0);
}

#[test]
fn insert_sequence_acknowledges_a_contiguous_prefix() {
    let seq = InsertSequence::new(10);
    assert_eq!(seq.acknowledged(), 10);
    let (a, b, c) = (seq.next(), seq.next(), seq.next());
    assert_eq!((a, b, c), (10, 11, 12));
    seq.acknowledge(c);
    assert_eq!(seq.acknowledged(), 10, "12 done but 10 and 11 are not");
    seq.acknowledge(a);
    assert_eq!(seq.acknowledged(), 11);
    seq.acknowledge(b);
    assert_eq!(seq.acknowledged(), 13);
}

// ---- workloads ----

#[test]
fn workloads_match_the_published_definitions() {
    use OpKind::*;
    type Definition = (YcsbWorkload, &'static [(OpKind, f64)], KeyDistribution);
    let expected: [Definition; 6] = [
        (YcsbWorkload::A, &[(Read, 0.5), (Update, 0.5)], KeyDistribution::Zipfian),
        (YcsbWorkload::B, &[(Read, 0.95), (Update, 0.05)], KeyDistribution::Zipfian),
        (YcsbWorkload::C, &[(Read, 1.0)], KeyDistribution::Zipfian),
        (YcsbWorkload::D, &[(Read, 0.95), (Insert, 0.05)], KeyDistribution::Latest),
        (YcsbWorkload::E, &[(Scan, 0.95), (Insert, 0.05)], KeyDistribution::Zipfian),
        (YcsbWorkload::F, &[(Read, 0.5), (ReadModifyWrite, 0.5)], KeyDistribution::Zipfian),
    ];
    for (workload, mix, distribution) in expected {
        let s = spec(workload);
        assert_eq!(s.mix, mix, "{workload:?}");
        assert_eq!(s.distribution, distribution, "{workload:?}");
        assert_eq!(s.max_scan_length, 100);
        assert!((s.mix.iter().map(|m| m.1).sum::<f64>() - 1.0).abs() < 1e-9);
    }
    assert_eq!(spec(YcsbWorkload::A).describe(), "A, update heavy: 50% read, 50% update; zipfian 0.99");
    assert_eq!(
        spec(YcsbWorkload::E).describe(),
        "E, short ranges: 95% scan, 5% insert; zipfian 0.99, scan length uniform 1..=100"
    );
}

#[test]
fn workload_mixes_hold_over_many_draws() {
    for workload in
        [YcsbWorkload::A, YcsbWorkload::B, YcsbWorkload::C, YcsbWorkload::D, YcsbWorkload::E, YcsbWorkload::F]
    {
        let s = spec(workload);
        let mut rng = rng();
        let mut counts: HashMap<OpKind, u64> = HashMap::new();
        for _ in 0..DRAWS {
            *counts.entry(s.choose(rng.gen())).or_default() += 1;
        }
        for &(kind, share) in s.mix {
            let seen = counts.get(&kind).copied().unwrap_or(0) as f64 / DRAWS as f64;
            assert!((seen - share).abs() < 0.01, "{workload:?} {kind:?}: {seen} vs {share}");
        }
        assert_eq!(counts.len(), s.mix.len(), "{workload:?} drew a kind outside its mix");
    }
}

#[test]
fn key_chooser_only_picks_inserted_records() {
    let mut rng = rng();
    for workload in [YcsbWorkload::A, YcsbWorkload::D, YcsbWorkload::E] {
        let s = spec(workload);
        let mut chooser = KeyChooser::new(&s, 1000, 10_000);
        for inserted in [1, 10, 1000, 1500] {
            for _ in 0..2000 {
                assert!(chooser.next(&mut rng, inserted) < inserted, "{workload:?}");
            }
        }
    }
}

// ---- report ----

fn sample(secs: f64, ops: u64) -> Sample {
    Sample { secs, ops, by_op: [0, ops, 0, 0, 0] }
}

#[test]
fn timeline_buckets_add_up() {
    // 1000 ops/s for 2.25 s, sampled every 0.1 s.
    let mut samples: Vec<Sample> = (0..=22).map(|i| sample(i as f64 / 10.0, i * 100)).collect();
    samples.push(sample(2.25, 2250));
    let t = timeline(&samples, &[OpKind::Read]);
    assert_eq!(t.interval_secs, 0.5);
    assert_eq!(t.points.len(), 5);
    assert_eq!(t.points.iter().map(|p| p.ops).sum::<u64>(), 2250);
    assert_eq!(t.points[0].ops, 500);
    assert_eq!(t.points[0].by_op[&OpKind::Read], 500);
    assert!((t.points[4].secs - 0.25).abs() < 1e-9);
    assert!((t.points[4].ops_per_sec() - 1000.0).abs() < 1.0);
    // Long phases get 1 s intervals.
    let long = timeline(&[sample(0.0, 0), sample(40.0, 4000)], &[OpKind::Read]);
    assert_eq!((long.interval_secs, long.points.len()), (1.0, 40));
    assert_eq!(long.points[7].ops, 100);
}

fn fake_report() -> YcsbReport {
    let mut stats = PhaseStats::new().unwrap();
    for micros in [100, 200, 300, 400, 5000] {
        stats.record(OpKind::Read, micros);
        stats.record(OpKind::ReadModifyWrite, micros * 2);
        stats.record(OpKind::Update, micros + 50);
    }
    stats.op(OpKind::Update).errors = 1;
    stats.op(OpKind::Read).not_found = 2;
    let samples: Vec<Sample> = (0..=4).map(|i| sample(i as f64 * 0.5, i * 5)).collect();
    let kinds = [OpKind::Read, OpKind::Update, OpKind::ReadModifyWrite];
    let run = PhaseReport {
        phase: Phase::Run,
        operations_requested: 11,
        operations: 10,
        errors: 1,
        hit_time_limit: false,
        elapsed_secs: 2.0,
        throughput_ops_per_sec: 5.0,
        ops: stats.reports(2.0),
        timeline: timeline(&samples, &kinds),
    };
    let mut load_stats = PhaseStats::new().unwrap();
    load_stats.record(OpKind::Insert, 250);
    let load = PhaseReport {
        phase: Phase::Load,
        operations_requested: 1,
        operations: 1,
        errors: 0,
        hit_time_limit: false,
        elapsed_secs: 0.1,
        throughput_ops_per_sec: 10.0,
        ops: load_stats.reports(0.1),
        timeline: timeline(&[sample(0.0, 0), sample(0.1, 1)], &[OpKind::Insert]),
    };
    YcsbReport {
        workload: YcsbWorkload::F,
        description: spec(YcsbWorkload::F).describe(),
        threads: 2,
        records: 1,
        field_length_bytes: 100,
        seed: 1,
        load: Some(load),
        run,
        errors: 1,
    }
}

#[test]
fn json_report_round_trips_with_the_documented_shape() {
    let report = fake_report();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["workload"], "f");
    assert_eq!(json["errors"], 1);
    assert_eq!(json["load"]["phase"], "load");
    let ops = json["run"]["ops"].as_array().unwrap();
    let names: Vec<&str> = ops.iter().map(|op| op["op"].as_str().unwrap()).collect();
    assert_eq!(names, ["read", "update", "read-modify-write"]);
    assert_eq!(ops[0]["count"], 5);
    assert_eq!(ops[0]["not_found"], 2);
    assert_eq!(ops[1]["errors"], 1);
    for field in ["p50", "p95", "p99", "p999", "max", "mean"] {
        assert!(ops[0]["latency_us"][field].is_number(), "{field}");
    }
    assert_eq!(ops[2]["latency_us"]["max"].as_u64().map(|v| v / 100), Some(100), "about 10000 us");
    let point = &json["run"]["timeline"]["points"][0];
    assert_eq!(point["by_op"]["read-modify-write"], 0);
    assert_eq!(point["ops"], 5);
    assert_eq!(json["run"]["timeline"]["interval_secs"], 0.5);
    let back: YcsbReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
}

// ---- chart ----

#[test]
fn chart_is_an_svg_with_axis_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chart.svg");
    super::chart::write_svg(&fake_report(), &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{}", &svg[..100.min(svg.len())]);
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    for label in [
        super::chart::THROUGHPUT_AXIS,
        super::chart::LATENCY_AXIS,
        "time since start (s)",
        "Throughput over time",
        "run: read-modify-write",
        "load: insert",
        "p99.9",
    ] {
        assert!(svg.contains(label), "no {label:?} in the chart");
    }
}

// ---- end to end ----

/// Parses `bedrock bench ARGS` into its arguments.
fn bench_args(args: &[&str]) -> crate::cli::BenchArgs {
    use clap::Parser;
    let cli = crate::cli::Cli::try_parse_from(["bedrock", "bench"].iter().chain(args)).unwrap();
    match cli.command {
        crate::cli::Command::Bench(args) => args,
        other => panic!("not bench: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_runs_against_a_server() {
    use std::future::IntoFuture;
    let dir = tempfile::tempdir().unwrap();
    let mut options = bedrock_txn::Options::with_dir(dir.path());
    options.wal.sync = bedrock_wal::SyncPolicy::Never;
    let limits = crate::store::Limits { max_key_bytes: options.max_key_bytes };
    let db = bedrock_txn::Db::open(options).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoints = [listener.local_addr().unwrap().to_string()];
    let server = tokio::spawn(
        axum::serve(listener, crate::serve::app(crate::store::Store::new(db, limits), None)).into_future(),
    );
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(crate::client::connect(&endpoints, &Default::default()).await.unwrap());
    }
    for (letter, workload) in [
        ("a", YcsbWorkload::A),
        ("b", YcsbWorkload::B),
        ("c", YcsbWorkload::C),
        ("d", YcsbWorkload::D),
        ("e", YcsbWorkload::E),
        ("f", YcsbWorkload::F),
    ] {
        let args = bench_args(&["--workload", letter, "--records", "300", "--operations", "400", "--threads", "4"]);
        assert_eq!(args.workload, Some(workload));
        let setup = super::setup(&args, workload);
        let load = super::runner::load(&clients, &setup).await.unwrap();
        assert_eq!((load.operations, load.errors), (300, 0), "{workload:?} load");
        let run = super::runner::run(&clients, &setup).await.unwrap();
        assert_eq!((run.operations, run.errors, run.hit_time_limit), (400, 0, false), "{workload:?} run");
        let total: u64 = run.timeline.points.iter().map(|p| p.ops).sum();
        assert_eq!(total, 400, "{workload:?} timeline {:?}", run.timeline);
        for op in &run.ops {
            // Every record read was loaded or inserted and acknowledged first.
            assert_eq!(op.not_found, 0, "{workload:?} {:?}", op.op);
            assert!(op.latency_us.p50 > 0 && op.latency_us.max >= op.latency_us.p99, "{workload:?} {:?}", op.op);
        }
        for &(kind, _) in setup.spec.mix {
            assert!(run.ops.iter().any(|op| op.op == kind && op.count > 0), "{workload:?}: no {kind:?}");
        }
    }
    server.abort();
}
