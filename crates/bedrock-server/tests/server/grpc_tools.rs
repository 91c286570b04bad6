//! What generic gRPC tools rely on: the standard health service
//! (`grpc.health.v1.Health`) and server reflection (`grpc.reflection.v1`),
//! which lists the services and hands out their descriptors.

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

use crate::common::{data_dir, Server};

async fn channel(server: &Server) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", server.endpoint()))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

async fn reflect(server: &Server, request: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(channel(server).await);
    let req = ServerReflectionRequest { host: String::new(), message_request: Some(request) };
    let mut stream = client.server_reflection_info(tokio_stream::iter([req])).await.expect("reflection").into_inner();
    let resp = stream.message().await.expect("reflection answer").expect("one answer");
    resp.message_response.expect("a response")
}

#[tokio::test]
async fn health_and_reflection_answer_generic_grpc_clients() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir);

    let mut health = HealthClient::new(channel(&server).await);
    for service in ["", "bedrock.v1.KV"] {
        let mut status = None;
        // The status is published by a task right after start; allow it a moment.
        for _ in 0..50 {
            let resp = health.check(HealthCheckRequest { service: service.into() }).await;
            if let Ok(resp) = resp {
                status = Some(resp.into_inner().status());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(status, Some(ServingStatus::Serving), "health of {service:?}");
    }
    let unknown = health.check(HealthCheckRequest { service: "no.such.Service".into() }).await;
    assert_eq!(unknown.expect_err("unknown service").code(), tonic::Code::NotFound);

    let MessageResponse::ListServicesResponse(list) =
        reflect(&server, MessageRequest::ListServices(String::new())).await
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["bedrock.v1.KV", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }

    let MessageResponse::FileDescriptorResponse(files) =
        reflect(&server, MessageRequest::FileContainingSymbol("bedrock.v1.KV".into())).await
    else {
        panic!("expected file descriptors");
    };
    assert!(!files.file_descriptor_proto.is_empty(), "no descriptor for bedrock.v1.KV");
}
