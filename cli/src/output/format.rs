//! The `-o/--output` formats `get` understands.

use anyhow::{bail, Result};

/// How `get` prints what it found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// The default table.
    Table,
    /// The table with extra columns (`-o wide`).
    Wide,
    Yaml,
    Json,
    /// `kind/name` lines (`-o name`).
    Name,
}

impl OutputFormat {
    /// Parses the value of `-o` (absent or empty: the table).
    pub fn parse(value: Option<&str>) -> Result<OutputFormat> {
        let v = value.unwrap_or("").trim();
        Ok(match v.to_ascii_lowercase().as_str() {
            "" => OutputFormat::Table,
            "wide" => OutputFormat::Wide,
            "yaml" | "yml" => OutputFormat::Yaml,
            "json" => OutputFormat::Json,
            "name" => OutputFormat::Name,
            _ => bail!(
                "unable to match a printer suitable for the output format {v:?}, \
                 allowed formats are: json,name,wide,yaml"
            ),
        })
    }

    /// Whether the output is a table (with or without the wide columns).
    pub fn is_table(self) -> bool {
        matches!(self, OutputFormat::Table | OutputFormat::Wide)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_formats_parse() {
        assert_eq!(OutputFormat::parse(None).unwrap(), OutputFormat::Table);
        assert_eq!(OutputFormat::parse(Some("")).unwrap(), OutputFormat::Table);
        assert_eq!(
            OutputFormat::parse(Some("wide")).unwrap(),
            OutputFormat::Wide
        );
        assert_eq!(
            OutputFormat::parse(Some("yaml")).unwrap(),
            OutputFormat::Yaml
        );
        assert_eq!(
            OutputFormat::parse(Some("JSON")).unwrap(),
            OutputFormat::Json
        );
        assert_eq!(
            OutputFormat::parse(Some("name")).unwrap(),
            OutputFormat::Name
        );
        assert!(OutputFormat::Wide.is_table());
        assert!(!OutputFormat::Yaml.is_table());
    }

    #[test]
    fn unknown_formats_are_refused() {
        let e = OutputFormat::parse(Some("xml")).unwrap_err().to_string();
        assert!(e.contains("\"xml\""), "{e}");
        assert!(e.contains("json,name,wide,yaml"), "{e}");
    }
}
