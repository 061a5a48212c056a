//! Diagnostics: problems found in recipes, each with where it came from.

use std::fmt;

/// One problem in a recipe layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong, naming the key and value.
    pub message: String,
    /// `file:line:col`, or the layer (`--set …`, an environment variable).
    pub location: String,
    /// A suggestion, e.g. "did you mean `learning_rate`?".
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.message, self.location)?;
        if let Some(help) = &self.help {
            write!(f, "; {help}")?;
        }
        Ok(())
    }
}

/// Every problem found while loading or planning a recipe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        if self.0.len() > 1 {
            write!(f, "\n{} problems found", self.0.len())?;
        }
        Ok(())
    }
}

impl Diagnostics {
    /// A single diagnostic.
    pub fn one(message: impl Into<String>, location: impl Into<String>) -> Self {
        Diagnostics(vec![Diagnostic {
            message: message.into(),
            location: location.into(),
            help: None,
        }])
    }
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, col)
}

/// "did you mean `x`?" for the candidate closest to `wrong`, if any is close.
pub fn did_you_mean<'a>(
    wrong: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let best = candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(wrong, c), c))
        .filter(|(distance, c)| *distance <= (c.len().max(wrong.len()) / 3).max(2))
        .min_by_key(|(distance, c)| (*distance, c.len()))?;
    Some(format!("did you mean `{}`?", best.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 8), (2, 3));
    }

    #[test]
    fn suggestions_pick_the_closest_name() {
        let keys = ["learning_rate", "lr_schedule", "steps"];
        assert_eq!(
            did_you_mean("lerning_rate", keys).unwrap(),
            "did you mean `learning_rate`?"
        );
        assert_eq!(did_you_mean("step", keys).unwrap(), "did you mean `steps`?");
        assert_eq!(did_you_mean("completely_else", keys), None);
    }
}
