//! Pressure stall information: the `*.pressure` files of cgroup v2 directories (also present in
//! the hybrid layout's v2 hierarchy) and `/proc/pressure/*`.

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PsiLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Cumulative stall time, µs (as the kernel writes it).
    pub total_us: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Psi {
    pub some: PsiLine,
    /// Absent in `cpu.pressure` of old kernels (before 5.13): reported as zero.
    pub full: PsiLine,
}

/// Parses `some avg10=.. avg60=.. avg300=.. total=..` and the `full` line. None when there is
/// no `some` line (not a pressure file).
pub fn parse(text: &str) -> Option<Psi> {
    let mut some = None;
    let mut full = PsiLine::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let kind = words.next();
        let mut l = PsiLine::default();
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                continue;
            };
            match k {
                "avg10" => l.avg10 = v.parse().ok()?,
                "avg60" => l.avg60 = v.parse().ok()?,
                "avg300" => l.avg300 = v.parse().ok()?,
                "total" => l.total_us = v.parse().ok()?,
                _ => {}
            }
        }
        match kind {
            Some("some") => some = Some(l),
            Some("full") => full = l,
            _ => {}
        }
    }
    Some(Psi { some: some?, full })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_lines() {
        let p = parse(
            "some avg10=0.12 avg60=3.40 avg300=5.00 total=2722239721\n\
             full avg10=0.01 avg60=0.02 avg300=0.03 total=77\n",
        )
        .unwrap();
        assert_eq!(p.some.avg10, 0.12);
        assert_eq!(p.some.avg60, 3.4);
        assert_eq!(p.some.avg300, 5.0);
        assert_eq!(p.some.total_us, 2722239721);
        assert_eq!(p.full.total_us, 77);
        assert_eq!(p.full.avg300, 0.03);
    }

    #[test]
    fn some_only_and_garbage() {
        let p = parse("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n").unwrap();
        assert_eq!(p.some.total_us, 5);
        assert_eq!(p.full, PsiLine::default());
        assert_eq!(parse(""), None);
        assert_eq!(parse("some avg10=x total=1\n"), None);
    }
}
