//! Plain tables as `kubectl get` prints them: left-aligned columns separated
//! by at least three spaces, the last column unpadded. Rows can be added after
//! the table was first printed (for `--watch`); columns only ever widen.

/// Spaces between columns.
pub const PADDING: usize = 3;

#[derive(Debug, Clone, Default)]
pub struct Table {
    widths: Vec<usize>,
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    /// Widens the columns to fit `row`.
    pub fn fit(&mut self, row: &[String]) {
        if self.widths.len() < row.len() {
            self.widths.resize(row.len(), 0);
        }
        for (w, cell) in self.widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }

    /// One row as a line (without the newline), padded to the current widths.
    pub fn line(&self, row: &[String]) -> String {
        let mut s = String::new();
        for (i, cell) in row.iter().enumerate() {
            s.push_str(cell);
            if i + 1 < row.len() {
                let w = self.widths.get(i).copied().unwrap_or(0);
                let pad = w.saturating_sub(cell.chars().count()) + PADDING;
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        // An empty last cell leaves no trailing padding.
        s.truncate(s.trim_end_matches(' ').len());
        s
    }
}

/// Renders a header and rows as one block of text (each line ending with a
/// newline). Without a header only the rows are printed.
pub fn render(header: Option<&[String]>, rows: &[Vec<String>]) -> String {
    let mut t = Table::new();
    if let Some(h) = header {
        t.fit(h);
    }
    for r in rows {
        t.fit(r);
    }
    let mut out = String::new();
    if let Some(h) = header {
        out.push_str(&t.line(h));
        out.push('\n');
    }
    for r in rows {
        out.push_str(&t.line(r));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn columns_are_left_aligned_with_three_spaces() {
        let header = strings(&["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
        let rows = vec![
            strings(&["nginx-pod", "1/1", "Running", "0", "5m12s"]),
            strings(&["nginx-rc-abcde", "0/1", "ContainerCreating", "0", "3s"]),
        ];
        let out = render(Some(&header), &rows);
        let want = "\
NAME             READY   STATUS              RESTARTS   AGE
nginx-pod        1/1     Running             0          5m12s
nginx-rc-abcde   0/1     ContainerCreating   0          3s
";
        assert_eq!(out, want);
    }

    #[test]
    fn rows_added_later_only_widen() {
        let mut t = Table::new();
        let h = strings(&["NAME", "AGE"]);
        t.fit(&h);
        assert_eq!(t.line(&h), "NAME   AGE");
        let r = strings(&["a-much-longer-name", "1s"]);
        t.fit(&r);
        assert_eq!(t.line(&r), "a-much-longer-name   1s");
        assert_eq!(t.line(&strings(&["x", "2s"])), "x                    2s");
    }

    #[test]
    fn empty_last_cells_leave_no_trailing_spaces() {
        let out = render(None, &[strings(&["wn1", "v1"]), strings(&["wn2", ""])]);
        assert_eq!(out, "wn1   v1\nwn2\n");
    }

    #[test]
    fn no_header_prints_only_rows() {
        let out = render(None, &[strings(&["a", "b"])]);
        assert_eq!(out, "a   b\n");
    }
}
