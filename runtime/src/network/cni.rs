//! A CNI client (spec 1.0): runs plugin executables with the CNI_*
//! environment and a network configuration on stdin, chaining the plugins of
//! a network configuration list (ADD in order, each given the previous
//! result; DEL in reverse order; CHECK in order with the cached result).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// How long one plugin may take before the operation fails.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A network configuration list (a `.conflist`).
#[derive(Clone, Debug)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Map<String, Value>>,
}

impl NetworkList {
    pub fn parse(value: &Value) -> anyhow::Result<NetworkList> {
        let name = value["name"]
            .as_str()
            .context("network list has no \"name\"")?
            .to_string();
        let cni_version = value["cniVersion"]
            .as_str()
            .context("network list has no \"cniVersion\"")?
            .to_string();
        let plugins = value["plugins"]
            .as_array()
            .context("network list has no \"plugins\" array")?
            .iter()
            .map(|p| {
                let p = p.as_object().context("a plugin entry is not an object")?;
                p.get("type")
                    .and_then(Value::as_str)
                    .context("a plugin entry has no \"type\"")?;
                Ok(p.clone())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!plugins.is_empty(), "network list {name} has no plugins");
        Ok(NetworkList {
            name,
            cni_version,
            plugins,
        })
    }
}

/// One container's attachment to one network: the CNI_* parameters.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub container_id: String,
    /// Empty on DEL when the namespace is already gone.
    pub netns: PathBuf,
    pub ifname: String,
    /// CNI_ARGS pairs (K8S_POD_NAME=...).
    pub args: Vec<(String, String)>,
    /// Values for plugins' declared capabilities ("portMappings": [...]).
    pub capability_args: Map<String, Value>,
}

/// Finds and runs plugin executables.
#[derive(Clone, Debug)]
pub struct CniPlugins {
    pub bin_dirs: Vec<PathBuf>,
}

impl CniPlugins {
    /// ADD every plugin in order; returns the last plugin's result.
    pub async fn add(&self, list: &NetworkList, att: &Attachment) -> anyhow::Result<Value> {
        let mut prev: Option<Value> = None;
        for plugin in &list.plugins {
            let conf = plugin_config(list, plugin, att, prev.as_ref());
            let result = self
                .exec("ADD", plugin_type(plugin), att, &conf)
                .await?
                .with_context(|| format!("plugin {} returned no result", plugin_type(plugin)))?;
            prev = Some(result);
        }
        prev.context("no plugin ran")
    }

    /// DEL every plugin in reverse order, each given the cached ADD result.
    /// Every plugin runs even when one fails; the first error is returned.
    pub async fn del(
        &self,
        list: &NetworkList,
        att: &Attachment,
        prev: Option<&Value>,
    ) -> anyhow::Result<()> {
        let mut first_err = None;
        for plugin in list.plugins.iter().rev() {
            let conf = plugin_config(list, plugin, att, prev);
            if let Err(e) = self.exec("DEL", plugin_type(plugin), att, &conf).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// CHECK every plugin in order against the cached ADD result.
    pub async fn check(
        &self,
        list: &NetworkList,
        att: &Attachment,
        prev: &Value,
    ) -> anyhow::Result<()> {
        for plugin in &list.plugins {
            let conf = plugin_config(list, plugin, att, Some(prev));
            self.exec("CHECK", plugin_type(plugin), att, &conf).await?;
        }
        Ok(())
    }

    fn find(&self, plugin: &str) -> anyhow::Result<PathBuf> {
        anyhow::ensure!(
            !plugin.contains('/') && !plugin.is_empty(),
            "bad CNI plugin type {plugin:?}"
        );
        self.bin_dirs
            .iter()
            .map(|d| d.join(plugin))
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "CNI plugin {plugin} not found in {} (install containernetworking-plugins)",
                    self.path_env()
                )
            })
    }

    fn path_env(&self) -> String {
        self.bin_dirs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Runs one plugin: the protocol's environment, the config on stdin, a
    /// result (or a CNI error object) on stdout.
    async fn exec(
        &self,
        command: &str,
        plugin: &str,
        att: &Attachment,
        conf: &Value,
    ) -> anyhow::Result<Option<Value>> {
        let exe = self.find(plugin)?;
        let args: Vec<String> = att.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut child = Command::new(&exe)
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into()),
            )
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &att.container_id)
            .env("CNI_NETNS", &att.netns)
            .env("CNI_IFNAME", &att.ifname)
            .env("CNI_ARGS", args.join(";"))
            .env("CNI_PATH", self.path_env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {}", exe.display()))?;
        let input = serde_json::to_vec(conf).context("encoding plugin config")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(&input)
                .await
                .with_context(|| format!("writing config to {plugin}"))?;
        }
        let output = tokio::time::timeout(PLUGIN_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| anyhow!("CNI {command} {plugin}: no answer in {PLUGIN_TIMEOUT:?}"))?
            .with_context(|| format!("waiting for {plugin}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "CNI {command} {plugin} failed: {}",
                describe_error(&stdout, &String::from_utf8_lossy(&output.stderr))
            );
        }
        if stdout.trim().is_empty() {
            return Ok(None);
        }
        let value: Value = serde_json::from_str(&stdout)
            .with_context(|| format!("CNI {command} {plugin}: bad result {stdout:?}"))?;
        Ok(Some(value))
    }
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn plugin_type(plugin: &Map<String, Value>) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("")
}

/// One plugin's stdin: its own config plus the list's name and version,
/// its capabilities' runtime values and the previous result.
fn plugin_config(
    list: &NetworkList,
    plugin: &Map<String, Value>,
    att: &Attachment,
    prev: Option<&Value>,
) -> Value {
    let mut conf = plugin.clone();
    conf.insert("name".into(), json!(list.name));
    conf.insert("cniVersion".into(), json!(list.cni_version));
    let mut runtime = Map::new();
    if let Some(caps) = plugin.get("capabilities").and_then(Value::as_object) {
        for (cap, on) in caps {
            if on.as_bool() == Some(true) {
                if let Some(v) = att.capability_args.get(cap) {
                    runtime.insert(cap.clone(), v.clone());
                }
            }
        }
    }
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    Value::Object(conf)
}

/// A plugin's failure as one line: its CNI error object, else its stderr.
fn describe_error(stdout: &str, stderr: &str) -> String {
    if let Ok(err) = serde_json::from_str::<Value>(stdout) {
        if let Some(msg) = err["msg"].as_str() {
            let code = err["code"].as_u64().unwrap_or(0);
            return match err["details"].as_str() {
                Some(d) if !d.is_empty() => format!("{msg}: {d} (code {code})"),
                _ => format!("{msg} (code {code})"),
            };
        }
    }
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    text.trim().to_string()
}

/// The IPv4 addresses a result assigned to interface `ifname` in the
/// namespace (or any address when the result names no interfaces).
pub fn result_ips(result: &Value, ifname: &str, netns: &Path) -> Vec<String> {
    let interfaces = result["interfaces"].as_array().cloned().unwrap_or_default();
    let wanted: Vec<usize> = interfaces
        .iter()
        .enumerate()
        .filter(|(_, i)| {
            i["name"].as_str() == Some(ifname)
                && i["sandbox"]
                    .as_str()
                    .map(|s| Path::new(s) == netns)
                    .unwrap_or(true)
        })
        .map(|(n, _)| n)
        .collect();
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|ip| match ip["interface"].as_u64() {
            Some(n) => wanted.is_empty() || wanted.contains(&(n as usize)),
            None => true,
        })
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|a| a.split('/').next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> NetworkList {
        NetworkList::parse(&json!({
            "cniVersion": "1.0.0", "name": "n",
            "plugins": [
                {"type": "bridge", "bridge": "cbr0"},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        }))
        .unwrap()
    }

    fn attachment() -> Attachment {
        let mut caps = Map::new();
        caps.insert("portMappings".into(), json!([{"hostPort": 8080}]));
        Attachment {
            container_id: "c".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: vec![],
            capability_args: caps,
        }
    }

    #[test]
    fn plugin_config_carries_name_version_runtime_config_and_prev_result() {
        let l = list();
        let first = plugin_config(&l, &l.plugins[0], &attachment(), None);
        assert_eq!(first["name"], "n");
        assert_eq!(first["cniVersion"], "1.0.0");
        assert!(first.get("runtimeConfig").is_none());
        assert!(first.get("prevResult").is_none());
        let prev = json!({"ips": []});
        let second = plugin_config(&l, &l.plugins[1], &attachment(), Some(&prev));
        assert_eq!(second["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert_eq!(second["prevResult"], prev);
    }

    #[test]
    fn rejects_lists_without_plugins() {
        assert!(
            NetworkList::parse(&json!({"cniVersion": "1.0.0", "name": "n", "plugins": []}))
                .is_err()
        );
        assert!(NetworkList::parse(&json!({"name": "n"})).is_err());
    }

    #[test]
    fn finds_the_sandbox_interface_address() {
        let result = json!({
            "interfaces": [
                {"name": "cbr0"}, {"name": "veth1"},
                {"name": "eth0", "sandbox": "/run/netns/x"}
            ],
            "ips": [{"interface": 2, "address": "10.244.1.5/24", "gateway": "10.244.1.1"}]
        });
        assert_eq!(
            result_ips(&result, "eth0", Path::new("/run/netns/x")),
            vec!["10.244.1.5"]
        );
    }

    #[test]
    fn describes_cni_error_objects() {
        let e = describe_error(
            r#"{"code":7,"msg":"failed to allocate","details":"range full"}"#,
            "",
        );
        assert_eq!(e, "failed to allocate: range full (code 7)");
        assert_eq!(describe_error("", "boom\n"), "boom");
    }
}
