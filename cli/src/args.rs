//! The command line, as clap parses it.

use clap::{ArgAction, Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "rkubectl",
    version,
    about = "rkubectl controls an rkube cluster, the way kubectl controls Kubernetes.",
    propagate_version = true
)]
pub struct Cli {
    /// Control-plane addresses, comma-separated host:port list (else
    /// $RKUBE_SERVER, else the config file, else the built-in default).
    #[arg(
        short = 's',
        long = "server",
        global = true,
        env = "RKUBE_SERVER",
        hide_env_values = true,
        value_name = "ADDRS"
    )]
    pub server: Option<String>,

    /// The kubeconfig to use (else $RKUBECONFIG, else ~/.rkube/config).
    #[arg(long = "kubeconfig", global = true, value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,

    /// The namespace to work in.
    #[arg(short = 'n', long = "namespace", global = true, value_name = "NS")]
    pub namespace: Option<String>,

    /// List objects across all namespaces.
    #[arg(short = 'A', long = "all-namespaces", global = true)]
    pub all_namespaces: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create objects from files, directories or standard input.
    Create(FileArgs),
    /// Create or update objects from files, directories or standard input.
    Apply(FileArgs),
    /// Show objects as tables, YAML, JSON or names.
    Get(GetArgs),
    /// Show the details of objects.
    Describe(DescribeArgs),
    /// Delete objects by name, label selector, or file.
    Delete(DeleteArgs),
    /// Set the number of replicas of a ReplicationController or ReplicaSet.
    Scale(ScaleArgs),
    /// Add, change or remove labels of objects.
    Label(LabelArgs),
    /// Print the logs of a container in a pod.
    Logs(LogsArgs),
    /// Run a command in a container.
    Exec(ExecArgs),
    /// Show the control-plane replicas and their state.
    ClusterInfo,
    /// List, add or remove control-plane replicas (one change at a time).
    #[command(subcommand)]
    Member(MemberCommand),
    /// Show the client version.
    Version(VersionArgs),
    /// List the resource types the API serves.
    ApiResources(ApiResourcesArgs),
}

#[derive(Args, Debug)]
pub struct FileArgs {
    /// A manifest file, a directory of them, or - for standard input.
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub files: Vec<String>,

    /// Also read manifests in subdirectories of a directory.
    #[arg(short = 'R', long = "recursive")]
    pub recursive: bool,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// TYPE[,TYPE...] [NAME...], or TYPE/NAME...
    #[arg(value_name = "RESOURCE", required_unless_present = "files")]
    pub args: Vec<String>,

    /// Output format: wide, yaml, json or name.
    #[arg(short = 'o', long = "output", value_name = "FORMAT")]
    pub output: Option<String>,

    /// Label selector (e.g. app=nginx,tier in (frontend)).
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Field selector (e.g. spec.nodeName=wn1,status.phase!=Running).
    #[arg(long = "field-selector", value_name = "SELECTOR")]
    pub field_selector: Option<String>,

    /// Add a LABELS column.
    #[arg(long = "show-labels")]
    pub show_labels: bool,

    /// Print the table without its header.
    #[arg(long = "no-headers")]
    pub no_headers: bool,

    /// After listing, keep printing changes.
    #[arg(short = 'w', long = "watch")]
    pub watch: bool,

    /// Print only changes, not the initial list.
    #[arg(long = "watch-only")]
    pub watch_only: bool,

    /// Show the objects named in manifest files.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub files: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// TYPE [NAME_PREFIX...], or TYPE/NAME...
    #[arg(value_name = "RESOURCE", required = true)]
    pub args: Vec<String>,

    /// Label selector.
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// TYPE NAME..., or TYPE/NAME...
    #[arg(value_name = "RESOURCE")]
    pub args: Vec<String>,

    /// Delete the objects named in manifest files.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub files: Vec<String>,

    /// Read directories given with -f recursively.
    #[arg(short = 'R', long = "recursive")]
    pub recursive: bool,

    /// Delete every object matching this label selector.
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Delete every object of the type in the namespace.
    #[arg(long = "all")]
    pub all: bool,

    /// How dependents go: background, foreground or orphan (true = background,
    /// false = orphan).
    #[arg(
        long = "cascade",
        value_name = "MODE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "background"
    )]
    pub cascade: Option<String>,

    /// Seconds the object has to terminate gracefully (-1: the object's
    /// own; 0 only with --force, else it means 1).
    #[arg(
        long = "grace-period",
        value_name = "SECONDS",
        default_value_t = -1,
        allow_negative_numbers = true
    )]
    pub grace_period: i64,

    /// Delete at once: a grace period of 1 second, as kubectl's --now.
    #[arg(long = "now")]
    pub now: bool,

    /// Remove the objects from the API at once, without waiting for their
    /// node to confirm that they stopped (grace period 0).
    #[arg(long = "force")]
    pub force: bool,

    /// Treat "not found" as success.
    #[arg(long = "ignore-not-found")]
    pub ignore_not_found: bool,

    /// Wait for the objects to be gone before returning.
    #[arg(
        long = "wait",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value_t = true,
        default_missing_value = "true"
    )]
    pub wait: bool,

    /// How long to wait before giving up (e.g. 30s, 2m); 0 waits as long
    /// as kubectl does (a week).
    #[arg(long = "timeout", value_name = "DURATION", default_value = "0s")]
    pub timeout: String,
}

#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// TYPE NAME..., or TYPE/NAME...
    #[arg(value_name = "RESOURCE")]
    pub args: Vec<String>,

    /// Scale the objects named in manifest files.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub files: Vec<String>,

    /// The new number of replicas.
    #[arg(
        long = "replicas",
        value_name = "N",
        required = true,
        allow_negative_numbers = true
    )]
    pub replicas: i32,

    /// Only scale if the current number of replicas is this.
    #[arg(long = "current-replicas", value_name = "N")]
    pub current_replicas: Option<i32>,
}

#[derive(Args, Debug)]
pub struct LabelArgs {
    /// TYPE NAME... KEY=VALUE... KEY-...
    #[arg(value_name = "ARGS", required = true)]
    pub args: Vec<String>,

    /// Allow changing the value of an existing label.
    #[arg(long = "overwrite")]
    pub overwrite: bool,

    /// Label every object matching this label selector.
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Label every object of the type in the namespace.
    #[arg(long = "all")]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// POD (or pod/POD), optionally followed by the container name.
    #[arg(value_name = "POD", required = true, num_args = 1..=2)]
    pub args: Vec<String>,

    /// The container (required when the pod has several).
    #[arg(short = 'c', long = "container", value_name = "NAME")]
    pub container: Option<String>,

    /// Keep streaming new lines until the container exits.
    #[arg(short = 'f', long = "follow")]
    pub follow: bool,

    /// Only the last N lines (-1: all).
    #[arg(
        long = "tail",
        value_name = "N",
        default_value_t = -1,
        allow_negative_numbers = true
    )]
    pub tail: i64,

    /// The previous terminated instance of the container.
    #[arg(short = 'p', long = "previous")]
    pub previous: bool,

    /// Only lines at or after this RFC 3339 time.
    #[arg(long = "since-time", value_name = "TIME", conflicts_with = "since")]
    pub since_time: Option<String>,

    /// Only lines newer than this duration (e.g. 5s, 2m, 1h).
    #[arg(long = "since", value_name = "DURATION")]
    pub since: Option<String>,

    /// Prefix every line with its RFC 3339 timestamp.
    #[arg(long = "timestamps")]
    pub timestamps: bool,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// POD (or pod/POD).
    #[arg(value_name = "POD")]
    pub pod: String,

    /// The command and its arguments (after --).
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub command: Vec<String>,

    /// The container (required when the pod has several).
    #[arg(short = 'c', long = "container", value_name = "NAME")]
    pub container: Option<String>,

    /// Pass standard input to the command.
    #[arg(short = 'i', long = "stdin")]
    pub stdin: bool,

    /// Allocate a terminal (with -i, when standard input is one).
    #[arg(short = 't', long = "tty")]
    pub tty: bool,

    /// Print nothing but the command's output.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Only the client version (the only one there is).
    #[arg(long = "client")]
    pub client: bool,

    /// Output format: yaml or json.
    #[arg(short = 'o', long = "output", value_name = "FORMAT")]
    pub output: Option<String>,
}

#[derive(Args, Debug)]
pub struct ApiResourcesArgs {
    /// Only namespaced (true) or cluster-scoped (false) resources.
    #[arg(long = "namespaced", value_name = "BOOL", action = ArgAction::Set)]
    pub namespaced: Option<bool>,

    /// Output format: wide or name.
    #[arg(short = 'o', long = "output", value_name = "FORMAT")]
    pub output: Option<String>,

    /// Print the table without its header.
    #[arg(long = "no-headers")]
    pub no_headers: bool,
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// List the control-plane members (voters and learners).
    List,
    /// Add a replica: it joins as a learner, catches up, then votes. Start
    /// it with --join (and an empty data directory) before or after.
    Add {
        /// The new replica's id (never one of a removed replica).
        id: u64,
        /// HOST:PORT where the other replicas reach it.
        address: String,
    },
    /// Remove a replica for good (its data directory may not rejoin).
    Remove {
        /// The replica's id.
        id: u64,
    },
}
