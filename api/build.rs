//! Generates the API types and gRPC stubs from `proto/`, with serde mappings
//! whose names are Kubernetes' JSON names.

/// Fields whose Kubernetes JSON name is not the plain camelCase of the proto
/// field name (acronyms and one historical capital).
const RENAMES: &[(&str, &str)] = &[
    ("ContainerPort.host_ip", "hostIP"),
    ("ContainerStatus.image_id", "imageID"),
    ("ContainerStatus.container_id", "containerID"),
    ("ContainerStateTerminated.container_id", "containerID"),
    ("PodStatus.host_ip", "hostIP"),
    ("PodStatus.pod_ip", "podIP"),
    ("PodStatus.pod_ips", "podIPs"),
    ("NodeSpec.pod_cidr", "podCIDR"),
    ("NodeSpec.pod_cidrs", "podCIDRs"),
    ("NodeSpec.provider_id", "providerID"),
    ("NodeSystemInfo.machine_id", "machineID"),
    ("NodeSystemInfo.system_uuid", "systemUUID"),
    ("NodeSystemInfo.boot_id", "bootID"),
    ("DaemonEndpoint.port", "Port"),
    ("ServiceSpec.cluster_ip", "clusterIP"),
    ("ServiceSpec.cluster_ips", "clusterIPs"),
    ("ServiceSpec.external_ips", "externalIPs"),
    ("ServiceSpec.load_balancer_ip", "loadBalancerIP"),
    ("SessionAffinityConfig.client_ip", "clientIP"),
];

/// Fields that Kubernetes types as IntOrString.
const INT_OR_STRING: &[&str] = &[
    "HttpGetAction.port",
    "TcpSocketAction.port",
    "ServicePort.target_port",
    "RollingUpdateDaemonSet.max_unavailable",
    "RollingUpdateDaemonSet.max_surge",
];

/// Maps of resource quantities, where YAML may write `cpu: 1` as a number.
const QUANTITY_MAPS: &[&str] = &[
    "ResourceRequirements.limits",
    "ResourceRequirements.requests",
    "NodeStatus.capacity",
    "NodeStatus.allocatable",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let mut cfg = tonic_prost_build::configure()
        .message_attribute(
            ".rkube.v1",
            "#[derive(serde::Serialize, serde::Deserialize)] \
             #[serde(rename_all = \"camelCase\", default, deny_unknown_fields)]",
        )
        .enum_attribute(
            ".rkube.v1",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = \"camelCase\")]",
        );
    for (field, name) in RENAMES {
        cfg = cfg.field_attribute(
            format!(".rkube.v1.{field}"),
            format!("#[serde(rename = \"{name}\")]"),
        );
    }
    for field in INT_OR_STRING {
        cfg = cfg.field_attribute(
            format!(".rkube.v1.{field}"),
            "#[serde(with = \"crate::serde_support::int_or_string\")]",
        );
    }
    for field in QUANTITY_MAPS {
        cfg = cfg.field_attribute(
            format!(".rkube.v1.{field}"),
            "#[serde(deserialize_with = \"crate::serde_support::quantity_map\")]",
        );
    }
    cfg.compile_protos(
        &[
            "../proto/rkube/v1/objects.proto",
            "../proto/rkube/v1/api.proto",
            "../proto/rkube/v1/internal.proto",
            "../proto/rkube/kubelet/v1/kubelet.proto",
        ],
        &["../proto"],
    )?;
    println!("cargo:rerun-if-changed=../proto");
    Ok(())
}
