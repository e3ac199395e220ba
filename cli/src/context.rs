//! What every command that talks to the cluster needs: the client and the
//! namespace scope chosen by `-n`/`-A`.

use crate::errors;
use anyhow::{bail, Result};
use rkube_api::client::Client;
use rkube_api::kinds::Kind;
use rkube_api::proto::ListRequest;
use rkube_api::Object;

pub struct Ctx {
    pub client: Client,
    /// How the client was made (TLS and credentials, for the kubelets).
    pub connect: rkube_api::kubeconfig::ConnectConfig,
    /// The namespace to work in (`-n`, else the config's, else `default`).
    pub namespace: String,
    /// Whether `-n` was given explicitly.
    pub explicit_namespace: bool,
    /// `-A`.
    pub all_namespaces: bool,
}

impl Ctx {
    /// The namespace to list `kind` in: `""` for every namespace (`-A`) or
    /// for cluster-scoped kinds.
    pub fn list_namespace(&self, kind: Kind) -> String {
        if !kind.namespaced() || self.all_namespaces {
            String::new()
        } else {
            self.namespace.clone()
        }
    }

    /// The namespace a named object of `kind` is looked up in.
    pub fn object_namespace(&self, kind: Kind) -> String {
        if kind.namespaced() {
            self.namespace.clone()
        } else {
            String::new()
        }
    }

    /// Fixes the namespace of an object read from a manifest: the manifest's
    /// own, else the current one. A manifest namespace that contradicts an
    /// explicit `-n` is an error, as in kubectl.
    pub fn place(&self, obj: &mut Object) -> Result<()> {
        let Some(kind) = obj.kind() else {
            bail!("the object holds no kind");
        };
        let ns = self.namespace.clone();
        let explicit = self.explicit_namespace;
        let Some(meta) = obj.metadata_mut() else {
            bail!("the object holds no kind");
        };
        if !kind.namespaced() {
            meta.namespace.clear();
            return Ok(());
        }
        if meta.namespace.is_empty() {
            meta.namespace = ns;
        } else if explicit && meta.namespace != ns {
            bail!(
                "the namespace from the provided object {:?} does not match the namespace {:?}. \
                 You must pass '--namespace={}' to perform this operation.",
                meta.namespace,
                ns,
                meta.namespace
            );
        }
        Ok(())
    }

    /// Lists objects of `kind` with optional selectors.
    pub async fn list(
        &self,
        kind: Kind,
        namespace: &str,
        label_selector: &str,
        field_selector: &str,
    ) -> Result<rkube_api::proto::ObjectList> {
        self.client
            .list(ListRequest {
                kind: kind.name().to_string(),
                namespace: namespace.to_string(),
                label_selector: label_selector.to_string(),
                field_selector: field_selector.to_string(),
                resource_version: String::new(),
            })
            .await
            .map_err(errors::server)
    }

    /// `No resources found in default namespace.` or `No resources found`.
    pub fn nothing_found(&self, namespaced: bool) -> String {
        if namespaced && !self.all_namespaces {
            format!("No resources found in {} namespace.", self.namespace)
        } else {
            "No resources found".to_string()
        }
    }
}
