//! `ferris-k8s-deploy --apply`: the objects sent to a Kubernetes API server by server-side
//! apply (what `kubectl apply --server-side` does), with strict field validation, so that the
//! server checks every field against its own schema; applying again changes nothing.

use std::path::Path;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, ValidationDirective};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::manifests::Object;
use crate::{K8sError, Result};

/// The field manager the objects' fields are applied under.
pub const FIELD_MANAGER: &str = "ferris-k8s-deploy";

/// A client of the API server that `kubeconfig` names (its current context), else of the
/// one `KUBECONFIG`, `~/.kube/config` or the pod's service account names. With `patient`,
/// an answer of 429 or 503 is asked again (backing off for minutes at most, as the client
/// does by default): right for an apply, not for a screen that redraws anyway.
pub async fn connect(kubeconfig: Option<&Path>, patient: bool) -> Result<Client> {
    let mut config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| K8sError::Api(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| K8sError::Api(format!("{}: {e}", path.display())))?
        }
        None => Config::infer()
            .await
            .map_err(|e| K8sError::Api(format!("finding the cluster (give --kubeconfig): {e}")))?,
    };
    config.default_retry = patient;
    Client::try_from(config).map_err(|e| K8sError::Api(format!("a client of the cluster: {e}")))
}

/// What the API server said, without the client's wrapping: its message and HTTP code.
pub(crate) fn reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

/// What applying did to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It was not there.
    Created,
    /// Some of its fields changed.
    Changed,
    /// It was there as given.
    Unchanged,
}

impl Outcome {
    /// As `kubectl` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Changed => "configured",
            Self::Unchanged => "unchanged",
        }
    }
}

/// One object applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Its kind and name (`statefulset/ferris-trading`).
    pub object: String,
    /// What the apply did.
    pub outcome: Outcome,
}

/// Applies `objects` in `namespace` (made first if missing), in their order; what each
/// apply did. The first object the server refuses ends it, with the server's reason.
pub async fn apply(client: &Client, namespace: &str, objects: &[Object]) -> Result<Vec<Applied>> {
    let mut applied = vec![ensure_namespace(client, namespace).await?];
    for object in objects {
        applied.push(match object {
            Object::ConfigMap(o) => apply_namespaced(client, namespace, o).await?,
            Object::StatefulSet(o) => apply_namespaced(client, namespace, o.as_ref()).await?,
            Object::Service(o) => apply_namespaced(client, namespace, o).await?,
            Object::PodDisruptionBudget(o) => apply_namespaced(client, namespace, o).await?,
            Object::HorizontalPodAutoscaler(o) => apply_namespaced(client, namespace, o).await?,
            Object::Job(o) => apply_namespaced(client, namespace, o.as_ref()).await?,
            Object::CronJob(o) => apply_namespaced(client, namespace, o.as_ref()).await?,
        });
    }
    Ok(applied)
}

/// Makes `namespace` if it is missing; one that exists is left alone (applying it would need
/// a right over namespaces that a user of one often lacks).
async fn ensure_namespace(client: &Client, namespace: &str) -> Result<Applied> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let exists = match namespaces.get_opt(namespace).await {
        Ok(found) => found.is_some(),
        // A user of one namespace may not read it: it is there, or the apply will say.
        Err(kube::Error::Api(status)) if status.code == 403 => true,
        Err(e) => {
            return Err(K8sError::Api(format!(
                "namespace/{namespace}: {}",
                reason(&e)
            )));
        }
    };
    if exists {
        return Ok(Applied {
            object: format!("namespace/{namespace}"),
            outcome: Outcome::Unchanged,
        });
    }
    let wanted = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    apply_one(namespaces, &wanted).await
}

async fn apply_namespaced<K>(client: &Client, namespace: &str, object: &K) -> Result<Applied>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Serialize,
{
    apply_one(Api::namespaced(client.clone(), namespace), object).await
}

async fn apply_one<K>(api: Api<K>, object: &K) -> Result<Applied>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + DeserializeOwned + Serialize,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let what = format!("{}/{name}", K::kind(&()).to_lowercase());
    let refused = |e: kube::Error| K8sError::Api(format!("{what}: {}", reason(&e)));
    let before = api.get_opt(&name).await.map_err(refused)?;
    let params = PatchParams::apply(FIELD_MANAGER)
        .force()
        .validation(ValidationDirective::Strict);
    let after = api
        .patch(&name, &params, &Patch::Apply(object))
        .await
        .map_err(refused)?;
    let outcome = match before {
        None => Outcome::Created,
        Some(before) if before.meta().resource_version == after.meta().resource_version => {
            Outcome::Unchanged
        }
        Some(_) => Outcome::Changed,
    };
    Ok(Applied {
        object: what,
        outcome,
    })
}
