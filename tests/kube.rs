//! The host's Kubernetes client, as far as it can be tested without a
//! cluster: it is built from the admin kubeconfig `pki::ensure` writes,
//! pointed at the control plane and trusting the cluster CA, without any
//! request. What it does against an API server (apply, the waits) needs a
//! cluster and is not tested here; the pure parts are unit tests in
//! src/kube/client.rs.

mod common;

use common::World;
use devcluster::kube::client::{KubeError, admin_config, client_from_admin_kubeconfig};

#[tokio::test]
async fn the_client_comes_from_the_admin_kubeconfig_without_a_request() {
    let world = World::new();
    let plan = world.cluster("kc", 1, 0);
    let secrets = devcluster::pki::ensure(&world.dirs, &plan).unwrap();

    let config = admin_config(&secrets.admin_kubeconfig_path).await.unwrap();
    assert_eq!(
        config.cluster_url.to_string(),
        format!("https://{}/", plan.network.api_endpoint)
    );
    // The cluster CA, as DER: the client trusts exactly our CA.
    let roots = config.root_cert.as_ref().expect("the cluster CA");
    assert_eq!(roots.len(), 1);
    let (_, ca) = x509_parser::parse_x509_certificate(&roots[0]).unwrap();
    assert_eq!(
        ca.subject().to_string(),
        x509_parser::pem::parse_x509_pem(secrets.ca.cert_pem.as_bytes())
            .unwrap()
            .1
            .parse_x509()
            .unwrap()
            .subject()
            .to_string()
    );
    // Client certificate auth with the admin identity.
    assert!(config.auth_info.client_certificate_data.is_some());
    assert!(config.auth_info.client_key_data.is_some());
    assert_eq!(config.default_namespace, "default");

    // Building the client makes no request: the address is a private one
    // nothing answers on, and this returns at once.
    let started = std::time::Instant::now();
    let client = client_from_admin_kubeconfig(&secrets.admin_kubeconfig_path)
        .await
        .unwrap();
    assert_eq!(client.default_namespace(), "default");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn a_missing_kubeconfig_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.kubeconfig");
    let Err(err) = client_from_admin_kubeconfig(&path).await else {
        panic!("a client from a missing kubeconfig")
    };
    assert!(matches!(err, KubeError::Kubeconfig { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot read the admin kubeconfig {}", path.display())
    );
    assert!(err.hint().unwrap().contains("devcluster up"));
}
