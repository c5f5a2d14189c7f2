//! A query-protocol request's parameters: the form's `Name=value` pairs, with lists as
//! `Name.1`, `Name.2` and structures as `Name.1.Member`.

use super::{Ec2Error, Result};
use runway_model::shapes::Tag;
use std::collections::BTreeMap;

/// The most parameters a request may carry (EC2's largest inputs are far smaller).
const MAX_PARAMS: usize = 1000;

/// The decoded parameters of one request, or of one structure inside it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params {
    map: BTreeMap<String, String>,
    /// Where these parameters are in the request (`IpPermissions.1.`), for messages.
    path: String,
}

fn decode(s: &str) -> Result<String> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| Ec2Error::invalid("the request's parameters are not UTF-8"))
}

impl Params {
    /// The parameters of the query string and the form body together.
    pub fn parse(query: Option<&str>, body: &[u8]) -> Result<Params> {
        let body = std::str::from_utf8(body)
            .map_err(|_| Ec2Error::invalid("the request body is not UTF-8"))?;
        let mut map = BTreeMap::new();
        for pair in query
            .unwrap_or("")
            .split('&')
            .chain(body.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(decode(k)?, decode(v)?);
            if map.len() > MAX_PARAMS {
                return Err(Ec2Error::invalid(format!(
                    "the request has more than {MAX_PARAMS} parameters"
                )));
            }
        }
        Ok(Params {
            map,
            path: String::new(),
        })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// A parameter the action cannot do without.
    pub fn required(&self, name: &str) -> Result<&str> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            Ec2Error::new(
                "MissingParameter",
                format!("The request must contain the parameter {}{name}", self.path),
            )
        })
    }

    /// An integer parameter, if present.
    pub fn int(&self, name: &str) -> Result<Option<i64>> {
        self.get(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    Ec2Error::invalid(format!(
                        "Invalid value '{v}' for {}{name}: not an integer",
                        self.path
                    ))
                })
            })
            .transpose()
    }

    /// A boolean parameter, if present.
    pub fn bool(&self, name: &str) -> Result<Option<bool>> {
        self.get(name)
            .map(|v| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(Ec2Error::invalid(format!(
                    "Invalid value '{v}' for {}{name}: must be true or false",
                    self.path
                ))),
            })
            .transpose()
    }

    /// The numbered members `name.1`, `name.2`, ... (the structures' sub-parameters
    /// with `name.N.` removed), in number order.
    pub fn items(&self, name: &str) -> Vec<Params> {
        let prefix = format!("{name}.");
        let mut by_index: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
        for (k, v) in self.map.range(prefix.clone()..) {
            let Some(rest) = k.strip_prefix(&prefix) else {
                break;
            };
            let (index, member) = rest.split_once('.').unwrap_or((rest, ""));
            if let Ok(index) = index.parse() {
                by_index
                    .entry(index)
                    .or_default()
                    .insert(member.to_string(), v.clone());
            }
        }
        by_index
            .into_iter()
            .map(|(i, map)| Params {
                map,
                path: format!("{}{name}.{i}.", self.path),
            })
            .collect()
    }

    /// The values of the list `name.1`, `name.2`, ...
    pub fn list(&self, name: &str) -> Vec<String> {
        self.items(name)
            .into_iter()
            .filter_map(|p| p.get("").map(str::to_string))
            .collect()
    }

    /// Whether anything named `name` or `name.*` was sent.
    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name) || self.map.keys().any(|k| k.starts_with(&format!("{name}.")))
    }

    /// The `Filter.N.Name` / `Filter.N.Value.M` filters.
    pub fn filters(&self) -> Result<Vec<(String, Vec<String>)>> {
        self.items("Filter")
            .into_iter()
            .map(|f| {
                let name = f.required("Name")?.to_string();
                Ok((name, f.list("Value")))
            })
            .collect()
    }

    /// The tags of `TagSpecification.N` whose resource type is `resource_type`.
    pub fn tag_specifications(&self, resource_type: &str) -> Result<Vec<Tag>> {
        let mut tags = Vec::new();
        for spec in self.items("TagSpecification") {
            let kind = spec.get("ResourceType").unwrap_or("");
            if kind != resource_type {
                return Err(Ec2Error::invalid(format!(
                    "TagSpecification.ResourceType must be {resource_type} for this action, got '{kind}'"
                )));
            }
            tags.extend(tag_list(&spec, "Tag")?);
        }
        check_tags(&tags)?;
        Ok(tags)
    }
}

/// The tags of `name.N.Key` / `name.N.Value`.
pub(crate) fn tag_list(p: &Params, name: &str) -> Result<Vec<Tag>> {
    p.items(name)
        .into_iter()
        .map(|t| {
            let key = t.required("Key")?.to_string();
            Ok(Tag {
                key: Some(key),
                value: Some(t.get("Value").unwrap_or("").to_string()),
            })
        })
        .collect()
}

/// EC2's rules for tags: at most 50, keys of 1 to 128 characters not starting with
/// `aws:`, values of at most 256.
pub(crate) fn check_tags(tags: &[Tag]) -> Result<()> {
    if tags.len() > 50 {
        return Err(Ec2Error::new(
            "TagLimitExceeded",
            "a resource may have at most 50 tags",
        ));
    }
    for t in tags {
        let key = t.key.as_deref().unwrap_or("");
        if key.is_empty()
            || key.chars().count() > 128
            || key.to_ascii_lowercase().starts_with("aws:")
        {
            return Err(Ec2Error::invalid(format!(
                "Tag key '{key}' must be 1 to 128 characters and must not start with aws:"
            )));
        }
        if t.value.as_deref().unwrap_or("").chars().count() > 256 {
            return Err(Ec2Error::invalid(format!(
                "The value of tag '{key}' is longer than 256 characters"
            )));
        }
    }
    Ok(())
}

/// Replaces or adds `new` tags in `tags`, by key.
pub(crate) fn merge_tags(tags: &mut Vec<Tag>, new: Vec<Tag>) {
    for tag in new {
        match tags.iter_mut().find(|t| t.key == tag.key) {
            Some(old) => old.value = tag.value,
            None => tags.push(tag),
        }
    }
}

/// Whether `text` matches an EC2 filter value (`*` any run, `?` one character).
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

/// Applies `filters` to `items`: `field(item, filter name)` is `Some(values)` for a known
/// filter (the item passes if one value matches one filter value), `None` for an unknown
/// one, which is an error.
pub(crate) fn filter<T>(
    items: Vec<T>,
    filters: &[(String, Vec<String>)],
    field: impl Fn(&T, &str) -> Option<Vec<String>>,
    tags: impl Fn(&T) -> &[Tag],
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    'items: for item in items {
        for (name, values) in filters {
            let pass = match super::tags_match(tags(&item), name, values) {
                Some(pass) => pass,
                None => {
                    let have = field(&item, name).ok_or_else(|| {
                        Ec2Error::invalid(format!("The filter '{name}' is invalid"))
                    })?;
                    have.iter().any(|h| values.iter().any(|v| glob(v, h)))
                }
            };
            if !pass {
                continue 'items;
            }
        }
        out.push(item);
    }
    Ok(out)
}

/// The items a Describe call names by id (all of them when `ids` is empty); an id that
/// names none is `missing(id)`.
pub(crate) fn named<T>(
    mut items: Vec<T>,
    ids: &[String],
    id: impl Fn(&T) -> &str,
    missing: impl Fn(&str) -> Ec2Error,
) -> Result<Vec<T>> {
    if let Some(absent) = ids
        .iter()
        .find(|i| !items.iter().any(|t| id(t) == i.as_str()))
    {
        return Err(missing(absent));
    }
    items.retain(|t| ids.is_empty() || ids.iter().any(|i| i == id(t)));
    Ok(items)
}

/// One page of `items` (`MaxResults`, 5 to 1000, and `NextToken`) and the next token.
pub(crate) fn page<T>(items: Vec<T>, p: &Params) -> Result<(Vec<T>, Option<String>)> {
    let max = match p.int("MaxResults")? {
        None => usize::MAX,
        Some(n) if (5..=1000).contains(&n) => n as usize,
        Some(n) => {
            return Err(Ec2Error::invalid(format!(
                "MaxResults must be between 5 and 1000, got {n}"
            )));
        }
    };
    let numbered = items
        .into_iter()
        .enumerate()
        .map(|(i, t)| (i as i64, t))
        .collect();
    crate::ops::page(numbered, p.get("NextToken"), max)
        .map_err(|_| Ec2Error::invalid("NextToken is not a token this API returned"))
}
