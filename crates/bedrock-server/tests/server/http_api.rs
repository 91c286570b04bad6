//! The HTTP API, spoken the way curl speaks it.

use crate::common::{data_dir, http, Server};

#[tokio::test]
async fn curl_examples_from_the_readme_work() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir);
    // curl -X PUT -d 'raft' 'http://127.0.0.1:8080/put?key=name'
    let put = http(server.addr, "PUT", "/put?key=name", Some(b"raft")).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let revision: u64 = put.header("x-bedrock-revision").expect("revision header").parse().unwrap();
    assert!(revision > 0);
    // curl 'http://127.0.0.1:8080/get?key=name'   # prints: raft
    let get = http(server.addr, "GET", "/get?key=name", None).await;
    assert_eq!((get.status, get.text().as_str()), (200, "raft"));
}

#[tokio::test]
async fn get_delete_scan_health() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir);
    let a = server.addr;
    // Percent-encoded and form-looking bytes reach the store verbatim.
    for (key, value) in [("a", "1"), ("b%20c", "x=y&z"), ("c", ""), ("d", "4")] {
        let resp = http(a, "PUT", &format!("/put?key={key}"), Some(value.as_bytes())).await;
        assert_eq!(resp.status, 200, "put {key}: {}", resp.text());
    }
    let get = http(a, "GET", "/get?key=b%20c", None).await;
    assert_eq!((get.status, get.text().as_str()), (200, "x=y&z"));

    let missing = http(a, "GET", "/get?key=nope", None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.text(), "key not found: nope\n");

    let scan = http(a, "GET", "/scan?start=a&end=d&limit=10", None).await.json();
    assert_eq!(scan["count"], 3);
    let keys: Vec<&str> = scan["kvs"].as_array().unwrap().iter().map(|kv| kv["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["a", "b c", "c"]);
    assert_eq!(scan["kvs"][1]["value"], "x=y&z");
    let limited = http(a, "GET", "/scan?limit=2", None).await.json();
    assert_eq!(limited["count"], 2);
    assert_eq!(limited["kvs"][1]["key"], "b c");

    let del = http(a, "DELETE", "/delete?key=a", None).await;
    assert_eq!(del.status, 200, "{}", del.text());
    assert_eq!(http(a, "GET", "/get?key=a", None).await.status, 404);
    let after = http(a, "GET", "/scan", None).await.json();
    assert_eq!(after["count"], 3);
    assert_eq!(after["kvs"][0]["key"], "b c");

    let health = http(a, "GET", "/health", None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), serde_json::json!({ "status": "ok" }));
}

#[tokio::test]
async fn txn_over_http() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir);
    let a = server.addr;
    assert_eq!(http(a, "PUT", "/put?key=k", Some(b"old")).await.status, 200);
    let cas = |expected: &str| {
        format!(
            r#"{{"compare": [{{"key": "k", "target": "VALUE", "result": "EQUAL", "value": "{expected}"}}],
                "success": [{{"put": {{"key": "k", "value": "new"}}}}, {{"get": {{"key": "k"}}}}],
                "failure": [{{"get": {{"key": "k"}}}}, {{"get": {{"key": "missing"}}}}]}}"#
        )
    };
    let ok = http(a, "POST", "/txn", Some(cas("old").as_bytes())).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let ok = ok.json();
    assert_eq!(ok["succeeded"], true);
    assert_eq!(ok["responses"][0]["put"]["revision"], ok["revision"]);
    assert_eq!(ok["responses"][1]["get"]["kv"]["value"], "new");

    let failed = http(a, "POST", "/txn", Some(cas("old").as_bytes())).await.json();
    assert_eq!(failed["succeeded"], false);
    assert_eq!(failed["responses"][0]["get"]["kv"]["value"], "new");
    assert!(failed["responses"][1]["get"]["kv"].is_null());
    assert_eq!(http(a, "GET", "/get?key=k", None).await.text(), "new");
}

#[tokio::test]
async fn bad_requests_get_4xx_and_the_server_keeps_serving() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir);
    let a = server.addr;
    let long_key = "k".repeat(9000); // over the 8 KiB default key limit
    let cases: Vec<(&str, String, Option<&[u8]>, u16)> = vec![
        ("PUT", "/put".into(), Some(b"v"), 400),                  // missing key parameter
        ("GET", "/get?name=x".into(), None, 400),                 // missing key parameter
        ("PUT", "/put?key=".into(), Some(b"v"), 400),             // empty key
        ("GET", "/get?key=".into(), None, 400),                   // empty key
        ("DELETE", "/delete?key=".into(), None, 400),             // empty key
        ("PUT", format!("/put?key={long_key}"), Some(b"v"), 400), // oversized key
        ("GET", format!("/get?key={long_key}"), None, 400),       // oversized key
        ("PUT", "/put?key=a&key=b".into(), Some(b"v"), 400),      // malformed query
        ("GET", "/scan?limit=ten".into(), None, 400),             // malformed query
        ("GET", "/scan?limit=0".into(), None, 400),               // out of range
        ("POST", "/txn".into(), Some(b"{not json"), 400),         // bad JSON
        ("POST", "/txn".into(), Some(br#"{"success":[{"put":{"key":"","value":"v"}}]}"#), 400),
        ("POST", "/txn".into(), Some(br#"{"compare":[{"key":"k","target":"EXISTS","result":"GREATER"}]}"#), 400),
        ("GET", "/nope".into(), None, 404),            // unknown route
        ("POST", "/get?key=a".into(), Some(b""), 405), // wrong method
    ];
    for (method, target, body, want) in cases {
        let resp = http(a, method, &target, body).await;
        let text = resp.text();
        let short = &target[..target.len().min(40)];
        assert_eq!(resp.status, want, "{method} {short}: {text}");
        assert!(
            text.ends_with('\n') && text.trim_end().lines().count() == 1,
            "{method} {short}: one-line reason, got {text:?}"
        );
    }
    let too_big = vec![b'v'; (8 << 20) + 1]; // over the 8 MiB default value limit
    let resp = http(a, "PUT", "/put?key=big", Some(&too_big)).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(resp.text().contains("exceeds the limit"), "{}", resp.text());

    // Still serving, and nothing was written by the rejected requests.
    assert_eq!(http(a, "GET", "/health", None).await.status, 200);
    assert_eq!(http(a, "PUT", "/put?key=after", Some(b"ok")).await.status, 200);
    assert_eq!(http(a, "GET", "/get?key=after", None).await.text(), "ok");
    assert_eq!(http(a, "GET", "/scan", None).await.json()["count"], 1);
}
