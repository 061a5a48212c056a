//! Resolving a large sweep fast. A run's recipe is the base recipe with a few
//! keys set, and a sweep's axes repeat their values across many runs, so each
//! top-level field a sweep sets (`train`, `loss`, `label`, ...) is
//! deserialized, and its canonical text for the run id written, once per
//! distinct setting of the axes that touch it; a run clones the typed base
//! and copies those fields in. The result equals [`resolve`]'s (the direct
//! path: set the keys in the TOML, deserialize the whole recipe), which is
//! taken wherever this one cannot decide: a field that does not deserialize
//! (for its exact message), a checkpoint reference or a Hub name (resolved from
//! disk), or an exclusion filter on a table a sweep sets keys inside.

use std::collections::HashMap;
use std::ops::Range;

use lpo_recipe::Recipe;
use toml::Value;

use crate::{
    advance, canonical_members, finish, get_path, id_of_members, position, resolve, same, set_path,
    Choice, ExcludeFilter, Resolved,
};

/// What every planner thread reads.
pub(crate) struct Shared<'a> {
    axes: &'a [Vec<Choice>],
    /// The recipe's TOML without its sweep.
    base: &'a Value,
    exclude: &'a [ExcludeFilter],
    /// `base` deserialized; `None` when it does not deserialize (every run
    /// then takes the direct path and reports why).
    base_recipe: Option<Recipe>,
    /// The base's canonical members (`"name":json`), by field name, in key
    /// order; `None` for a field outside run ids.
    base_members: Vec<(String, Option<Vec<u8>>)>,
    /// Each field the sweep sets, with the axes that set keys in it.
    fields: Vec<(String, Vec<usize>)>,
}

/// A field set by some axes: the recipe with that field deserialized (the
/// others at their defaults) and its canonical member.
struct Field {
    recipe: Recipe,
    member: Option<Vec<u8>>,
}

impl<'a> Shared<'a> {
    pub(crate) fn new(
        axes: &'a [Vec<Choice>],
        base: &'a Value,
        exclude: &'a [ExcludeFilter],
    ) -> Shared<'a> {
        let base_recipe: Option<Recipe> = base.clone().try_into().ok();
        let base_members = match &base_recipe {
            Some(recipe) => canonical_members(recipe),
            None => Vec::new(),
        };
        let mut fields: Vec<(String, Vec<usize>)> = Vec::new();
        for (a, axis) in axes.iter().enumerate() {
            for (key, _) in axis.iter().flatten() {
                let field = top_level(key);
                match fields.iter_mut().find(|(f, _)| f == field) {
                    Some((_, setters)) if setters.contains(&a) => {}
                    Some((_, setters)) => setters.push(a),
                    None => fields.push((field.to_string(), vec![a])),
                }
            }
        }
        Shared {
            axes,
            base,
            exclude,
            base_recipe,
            base_members,
            fields,
        }
    }

    /// Runs number `range` of the sweep, in order.
    pub(crate) fn resolve_range(&self, range: Range<usize>) -> Vec<Resolved> {
        let mut memo: Vec<HashMap<Vec<usize>, Option<Field>>> =
            (0..self.fields.len()).map(|_| HashMap::new()).collect();
        let mut odometer = position(range.start, self.axes);
        let mut out = Vec::with_capacity(range.len());
        for _ in range {
            let assignments: Choice = odometer
                .iter()
                .zip(self.axes)
                .flat_map(|(&i, axis)| axis[i].iter().cloned())
                .collect();
            let run = self
                .resolve_fast(&odometer, &assignments, &mut memo)
                .unwrap_or_else(|| resolve(assignments, self.base, self.exclude));
            out.push(run);
            advance(&mut odometer, self.axes);
        }
        out
    }

    /// The run at `odometer`, or `None` where only the direct path decides.
    fn resolve_fast(
        &self,
        odometer: &[usize],
        assignments: &Choice,
        memo: &mut [HashMap<Vec<usize>, Option<Field>>],
    ) -> Option<Resolved> {
        let base_recipe = self.base_recipe.as_ref()?;
        if self.excluded(assignments)? {
            return Some(Resolved::Excluded);
        }
        // Deserialize each set field once per setting of its axes.
        let keys: Vec<Vec<usize>> = self
            .fields
            .iter()
            .map(|(_, setters)| setters.iter().map(|&a| odometer[a]).collect())
            .collect();
        for ((name, _), (key, memo)) in self.fields.iter().zip(keys.iter().zip(memo.iter_mut())) {
            if !memo.contains_key(key) {
                let field = self.field(name, assignments);
                memo.insert(key.clone(), field);
            }
        }
        let mut recipe = base_recipe.clone();
        let mut set: Vec<(&str, &Field)> = Vec::with_capacity(self.fields.len());
        for ((name, _), (key, memo)) in self.fields.iter().zip(keys.iter().zip(memo.iter())) {
            let field = memo[key].as_ref()?;
            if !recipe.copy_field(&field.recipe, name) {
                return None;
            }
            set.push((name, field));
        }
        let in_base = |name: &str| self.base_members.iter().any(|(n, _)| n == name);
        if recipe.reference.checkpoint.is_some()
            || crate::names_hub(&recipe)
            || set
                .iter()
                .any(|(name, field)| field.member.is_some() && !in_base(name))
        {
            return None;
        }
        let members = self.base_members.iter().filter_map(|(name, member)| {
            match set.iter().find(|(n, _)| n == name) {
                Some((_, field)) => field.member.as_deref(),
                None => member.as_deref(),
            }
        });
        let id = id_of_members(members);
        Some(finish(recipe, assignments.clone(), |_| id))
    }

    /// The field `name` with the run's assignments to it set: deserialized
    /// alone (`None` if it does not deserialize), and its canonical member.
    fn field(&self, name: &str, assignments: &Choice) -> Option<Field> {
        let mut root = toml::Table::new();
        if let Some(value) = self.base.get(name) {
            root.insert(name.to_string(), value.clone());
        }
        let mut root = Value::Table(root);
        for (key, value) in assignments {
            if top_level(key) == name {
                set_path(&mut root, key, value.clone());
            }
        }
        let recipe: Recipe = root.try_into().ok()?;
        let member = canonical_members(&recipe)
            .into_iter()
            .find(|(field, _)| field == name)
            .and_then(|(_, member)| member);
        Some(Field { recipe, member })
    }

    /// Whether an exclusion filter drops the run; `None` when a filter reads
    /// a table the sweep sets keys inside (the direct path merges them).
    fn excluded(&self, assignments: &Choice) -> Option<bool> {
        for filter in self.exclude {
            let mut all = true;
            for (key, want) in filter {
                let have = lookup(assignments, self.base, key)?;
                if !have.is_some_and(|have| same(have, want)) {
                    all = false;
                    break;
                }
            }
            if all {
                return Some(true);
            }
        }
        Some(false)
    }
}

/// The value at dotted `key` once `assignments` are set on `base`; `None`
/// when that takes merging (a key set inside the table asked for, or two
/// assignments on one path).
fn lookup<'v>(assignments: &'v Choice, base: &'v Value, key: &str) -> Option<Option<&'v Value>> {
    let mut found = None;
    for (set, value) in assignments {
        let hit = if set == key {
            Some(value)
        } else if let Some(rest) = key
            .strip_prefix(set.as_str())
            .and_then(|r| r.strip_prefix('.'))
        {
            get_path(value, rest)
        } else if set.starts_with(key) && set.as_bytes().get(key.len()) == Some(&b'.') {
            return None;
        } else {
            continue;
        };
        if found.is_some() {
            return None;
        }
        found = Some(hit);
    }
    Some(found.unwrap_or_else(|| get_path(base, key)))
}

/// The top-level field a dotted key lies in.
fn top_level(key: &str) -> &str {
    key.split('.').next().unwrap_or(key)
}
