//! Elastic tabstops for describe pages: cells end at tabs, and a column is
//! aligned across each run of consecutive lines that have a cell in it, so
//! `Name:`/`Namespace:`/`Labels:` line up while a nested block aligns on its
//! own. The text after a line's last tab is never padded.

/// Aligns tab-separated `text`, putting `padding` spaces after the widest
/// cell of each column block.
pub fn align(text: &str, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<Vec<usize>> = lines
        .iter()
        .map(|cells| vec![0; cells.len().saturating_sub(1)])
        .collect();
    layout(&lines, &mut widths, 0, 0, lines.len(), padding);
    let mut out = String::with_capacity(text.len());
    for (i, cells) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut line = String::new();
        let last = cells.len().saturating_sub(1);
        for (c, cell) in cells.iter().enumerate() {
            line.push_str(cell);
            if c < last {
                let pad = widths[i][c].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        // Padding before an empty last cell is noise.
        out.push_str(line.trim_end_matches(' '));
    }
    out
}

/// Number of tab-terminated cells on a line.
fn terminated(cells: &[&str]) -> usize {
    cells.len().saturating_sub(1)
}

/// Sets the widths of column `col` for lines `start..end`, block by block,
/// then of the columns right of it within each block.
fn layout(
    lines: &[Vec<&str>],
    widths: &mut [Vec<usize>],
    col: usize,
    start: usize,
    end: usize,
    padding: usize,
) {
    let mut i = start;
    while i < end {
        if terminated(&lines[i]) <= col {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut width = 0;
        while j < end && terminated(&lines[j]) > col {
            width = width.max(lines[j][col].chars().count() + padding);
            j += 1;
        }
        for w in widths.iter_mut().take(j).skip(i) {
            w[col] = width;
        }
        layout(lines, widths, col + 1, i, j, padding);
        i = j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_lines_align() {
        let text = "Name:\tnginx\nNamespace:\tdefault\nLabels:\tapp=x\n\ttier=dev\n";
        let want =
            "Name:       nginx\nNamespace:  default\nLabels:     app=x\n            tier=dev\n";
        assert_eq!(align(text, 2), want);
    }

    #[test]
    fn a_line_without_tabs_breaks_the_block() {
        let text = "Name:\tx\nIPs:\n  IP:\t10.0.0.1\nStatus:\tRunning";
        let want = "Name:  x\nIPs:\n  IP:    10.0.0.1\nStatus:  Running";
        assert_eq!(align(text, 2), want);
    }

    #[test]
    fn nested_columns_align_within_their_block() {
        let text = "Port:\t<unset>\t80/TCP\nTargetPort:\t8080/TCP\nNodePort:\thttp\t30080/TCP";
        let want = "\
Port:        <unset>  80/TCP
TargetPort:  8080/TCP
NodePort:    http  30080/TCP";
        assert_eq!(align(text, 2), want);
    }

    #[test]
    fn empty_values_leave_no_trailing_spaces() {
        assert_eq!(
            align("Image ID:\t\nImage:\tnginx", 2),
            "Image ID:\nImage:     nginx"
        );
    }
}
