//! The figures of a run: each with its baseline measured in the same run, the
//! ratio, and the goal where the issue set one.

use serde::Serialize;

/// Whether more or less is better.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// A goal: the figure itself under/over a limit, or its ratio to the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub text: String,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Stable key (for the JSON readers).
    pub key: String,
    /// What it is, for people.
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub better: Better,
    /// The same quantity for the baseline measured in this run.
    pub baseline: f64,
    pub baseline_name: String,
    /// value / baseline (with rounds: the median of the rounds' ratios).
    pub ratio: f64,
    /// How many rounds the figure is the median of.
    pub rounds: usize,
    pub goal: Option<Goal>,
}

#[derive(Default)]
pub struct Figures {
    pub list: Vec<Figure>,
}

impl Figures {
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        key: &str,
        name: &str,
        value: f64,
        unit: &str,
        better: Better,
        baseline: f64,
        baseline_name: &str,
    ) -> &mut Figure {
        let ratio = if baseline != 0.0 {
            value / baseline
        } else {
            f64::NAN
        };
        self.list.push(Figure {
            key: key.to_string(),
            name: name.to_string(),
            value,
            unit: unit.to_string(),
            better,
            baseline,
            baseline_name: baseline_name.to_string(),
            ratio,
            rounds: 1,
            goal: None,
        });
        self.list.last_mut().expect("just pushed")
    }

    /// A figure measured in rounds, each round next to its own baseline: the
    /// medians of both, and the median of the per-round ratios (which is what
    /// survives a machine whose load changes between rounds).
    #[allow(clippy::too_many_arguments)]
    pub fn add_rounds(
        &mut self,
        key: &str,
        name: &str,
        values: &[f64],
        unit: &str,
        better: Better,
        baselines: &[f64],
        baseline_name: &str,
    ) -> &mut Figure {
        let ratios: Vec<f64> = values
            .iter()
            .zip(baselines)
            .filter(|(_, b)| **b != 0.0)
            .map(|(v, b)| v / b)
            .collect();
        let f = self.add(
            key,
            name,
            crate::util::median(values),
            unit,
            better,
            crate::util::median(baselines),
            baseline_name,
        );
        if !ratios.is_empty() {
            f.ratio = crate::util::median(&ratios);
        }
        f.rounds = values.len();
        f
    }
}

impl Figure {
    /// Goal: value below `limit`.
    pub fn under(&mut self, limit: f64) {
        self.goal = Some(Goal {
            text: format!("< {} {}", num(limit), self.unit),
            met: self.value < limit,
        });
    }

    /// Goal: value at least `limit`.
    pub fn at_least(&mut self, limit: f64) {
        self.goal = Some(Goal {
            text: format!(">= {} {}", num(limit), self.unit),
            met: self.value >= limit,
        });
    }

    /// Goal: ratio to the baseline at most `limit`.
    pub fn ratio_at_most(&mut self, limit: f64) {
        self.goal = Some(Goal {
            text: format!("ratio <= {limit}"),
            met: self.ratio <= limit,
        });
    }

    /// Goal: ratio to the baseline at least `limit`.
    pub fn ratio_at_least(&mut self, limit: f64) {
        self.goal = Some(Goal {
            text: format!("ratio >= {limit}"),
            met: self.ratio >= limit,
        });
    }
}

/// A number with sensible precision.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_string();
    }
    let a = v.abs();
    if a >= 1000.0 {
        let s = format!("{:.0}", v);
        // Thousands separators.
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{:.0}", v)
    } else if a >= 10.0 {
        format!("{:.1}", v)
    } else if a >= 0.1 {
        format!("{:.2}", v)
    } else {
        format!("{:.3}", v)
    }
}

/// The figures as a Markdown table (also readable on a terminal).
pub fn table(figures: &[Figure]) -> String {
    let mut rows = vec![[
        "figure".to_string(),
        "faseng/chima".to_string(),
        "baseline (same run)".to_string(),
        "ratio".to_string(),
        "goal".to_string(),
    ]];
    for f in figures {
        let goal = match &f.goal {
            Some(g) => format!("{} {}", g.text, if g.met { "met" } else { "MISSED" }),
            None => String::new(),
        };
        rows.push([
            f.name.clone(),
            format!("{} {}", num(f.value), f.unit),
            format!("{} {} ({})", num(f.baseline), f.unit, f.baseline_name),
            format!("{}x", num(f.ratio)),
            goal,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        out.push('|');
        for (c, cell) in r.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            out.push(' ');
            out.push_str(cell);
            out.push_str(&" ".repeat(pad));
            out.push_str(" |");
        }
        out.push('\n');
        if i == 0 {
            out.push('|');
            for w in &widths {
                out.push_str(&"-".repeat(w + 2));
                out.push('|');
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(123456.7), "123,457");
        assert_eq!(num(1000.0), "1,000");
        assert_eq!(num(512.3), "512");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1.234), "1.23");
        assert_eq!(num(0.01234), "0.012");
        assert_eq!(num(f64::NAN), "-");
    }

    #[test]
    fn rounds_take_the_median_ratio() {
        let mut f = Figures::default();
        let fig = f.add_rounds(
            "r",
            "R",
            &[10.0, 30.0, 20.0],
            "/s",
            Better::Higher,
            &[100.0, 100.0, 400.0],
            "b",
        );
        assert_eq!((fig.value, fig.baseline, fig.rounds), (20.0, 100.0, 3));
        assert_eq!(fig.ratio, 0.1);
    }

    #[test]
    fn goals_and_ratios() {
        let mut f = Figures::default();
        f.add("a", "A", 8.0, "ms", Better::Lower, 2.0, "b")
            .under(10.0);
        f.add("b", "B", 40.0, "/s", Better::Higher, 100.0, "b")
            .ratio_at_least(0.5);
        assert_eq!(f.list[0].ratio, 4.0);
        assert!(f.list[0].goal.as_ref().unwrap().met);
        assert!(!f.list[1].goal.as_ref().unwrap().met);
        let t = table(&f.list);
        assert!(t.contains("| A "), "{t}");
        assert!(t.contains("MISSED"), "{t}");
    }
}
