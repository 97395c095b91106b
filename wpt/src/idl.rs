//! The WebIDL of a Bikeshed spec source: its `<script type="idl">` blocks, parsed far enough to
//! list every interface, member, dictionary member and enum value (the `idlharness` check of
//! `tests/idlharness.rs` compares that list with a table of Rust counterparts).
//!
//! Supported: `[ExtendedAttributes]`, `partial interface`, `interface X : Parent`, attributes
//! (`readonly`), operations, `constructor(...)`, `dictionary X : Parent` with `required` members
//! and defaults, `enum`, and `//` / `/* */` comments. That is all the Background Fetch IDL uses;
//! anything else is reported as an error rather than skipped.

use std::fmt;

/// An operation's or constructor's argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Argument {
    /// Its name.
    pub name: String,
    /// Its type, as written.
    pub ty: String,
    /// Whether it is `optional`.
    pub optional: bool,
    /// Its default value, as written.
    pub default: Option<String>,
}

/// An interface member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member {
    /// `[readonly] attribute T name;`
    Attribute {
        /// Its name.
        name: String,
        /// Its type.
        ty: String,
        /// `readonly`
        readonly: bool,
    },
    /// `R name(args);`
    Operation {
        /// Its name.
        name: String,
        /// Its return type.
        returns: String,
        /// Its arguments.
        arguments: Vec<Argument>,
    },
    /// `constructor(args);`
    Constructor {
        /// Its arguments.
        arguments: Vec<Argument>,
    },
}

/// A dictionary member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DictionaryMember {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: String,
    /// `required`
    pub required: bool,
    /// Its default value, as written.
    pub default: Option<String>,
}

/// A definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Definition {
    /// An interface (possibly partial).
    Interface {
        /// Its name.
        name: String,
        /// `partial interface`
        partial: bool,
        /// Its parent interface.
        parent: Option<String>,
        /// Its extended attributes, as written (for example `Exposed=(Window,Worker)`).
        extended_attributes: Option<String>,
        /// Its members.
        members: Vec<Member>,
    },
    /// A dictionary.
    Dictionary {
        /// Its name.
        name: String,
        /// Its parent dictionary.
        parent: Option<String>,
        /// Its own members.
        members: Vec<DictionaryMember>,
    },
    /// An enum.
    Enum {
        /// Its name.
        name: String,
        /// Its values.
        values: Vec<String>,
    },
}

/// A parse error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdlError(pub String);

impl fmt::Display for IdlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The text of every `<script type="idl">` block of a Bikeshed source, in order.
pub fn idl_blocks(source: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("<script type=\"idl\">") {
        let after = &rest[start + "<script type=\"idl\">".len()..];
        let Some(end) = after.find("</script>") else {
            break;
        };
        out.push(&after[..end]);
        rest = &after[end..];
    }
    out
}

fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    loop {
        let line = rest.find("//");
        let block = rest.find("/*");
        match (line, block) {
            (None, None) => {
                out.push_str(rest);
                return out;
            }
            (Some(l), b) if b.is_none_or(|b| l < b) => {
                out.push_str(&rest[..l]);
                rest = rest[l..].find('\n').map_or("", |n| &rest[l + n..]);
            }
            (_, Some(b)) => {
                out.push_str(&rest[..b]);
                rest = rest[b..].find("*/").map_or("", |n| &rest[b + n + 2..]);
            }
            _ => unreachable!(),
        }
    }
}

/// Splits `s` at `sep` where no bracket of `()<>[]{}` is open.
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let mut depth = 0i32;
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' | '<' | '[' | '{' => depth += 1,
            ')' | '>' | ']' | '}' => depth -= 1,
            c if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Removes leading `[...]` extended attributes.
fn strip_extended_attributes(s: &str) -> (Option<&str>, &str) {
    let t = s.trim_start();
    if !t.starts_with('[') {
        return (None, t);
    }
    let mut depth = 0;
    for (i, c) in t.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    return (Some(&t[1..i]), t[i + 1..].trim_start());
                }
            }
            _ => {}
        }
    }
    (None, t)
}

/// `Type name [= default]` → (type, name, default).
fn typed_name(s: &str) -> Result<(String, String, Option<String>), IdlError> {
    let parts = split_top(s, '=');
    let (decl, default) = match parts.as_slice() {
        [d] => (*d, None),
        [d, v] => (*d, Some(v.trim().to_owned())),
        _ => return Err(IdlError(format!("cannot read {s:?}"))),
    };
    let decl = decl.trim();
    let split = decl
        .rfind(char::is_whitespace)
        .ok_or_else(|| IdlError(format!("no type or name in {s:?}")))?;
    Ok((
        decl[..split].trim().to_owned(),
        decl[split..].trim().to_owned(),
        default,
    ))
}

fn arguments(s: &str) -> Result<Vec<Argument>, IdlError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Vec::new());
    }
    split_top(s, ',')
        .into_iter()
        .map(|a| {
            let (_, a) = strip_extended_attributes(a);
            let (optional, a) = match a.strip_prefix("optional ") {
                Some(rest) => (true, rest),
                None => (false, a),
            };
            let (ty, name, default) = typed_name(a)?;
            Ok(Argument {
                name,
                ty,
                optional,
                default,
            })
        })
        .collect()
}

/// Finds the `(` that opens an operation's argument list and its matching `)`.
fn parens(s: &str) -> Option<(usize, usize)> {
    let mut angle = 0;
    let mut open = None;
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '<' => angle += 1,
            '>' => angle -= 1,
            '(' if angle == 0 && open.is_none() => {
                // A parenthesised union type comes before the name: skip it.
                let before = s[..i].trim_end();
                if before.is_empty() || before.ends_with(['<', ',']) {
                    depth += 1;
                    continue;
                }
                open = Some(i);
                depth = 1;
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0
                    && let Some(o) = open
                {
                    return Some((o, i));
                }
            }
            _ => {}
        }
    }
    None
}

fn member(s: &str) -> Result<Member, IdlError> {
    let (_, s) = strip_extended_attributes(s);
    if let Some(rest) = s.strip_prefix("constructor") {
        let (o, c) = parens(&format!("x{rest}"))
            .ok_or_else(|| IdlError(format!("bad constructor {s:?}")))?;
        return Ok(Member::Constructor {
            arguments: arguments(&format!("x{rest}")[o + 1..c])?,
        });
    }
    let words: Vec<&str> = s.split_whitespace().collect();
    if let Some(pos) = words.iter().position(|w| *w == "attribute") {
        let readonly = words[..pos].contains(&"readonly");
        let name = words
            .last()
            .ok_or_else(|| IdlError(format!("bad attribute {s:?}")))?
            .to_string();
        let ty = words[pos + 1..words.len() - 1].join(" ");
        return Ok(Member::Attribute { name, ty, readonly });
    }
    let (o, c) = parens(s).ok_or_else(|| IdlError(format!("cannot read member {s:?}")))?;
    let head = s[..o].trim();
    let split = head
        .rfind(char::is_whitespace)
        .ok_or_else(|| IdlError(format!("no return type in {s:?}")))?;
    Ok(Member::Operation {
        name: head[split..].trim().to_owned(),
        returns: head[..split].trim().to_owned(),
        arguments: arguments(&s[o + 1..c])?,
    })
}

/// Parses one IDL block.
pub fn parse(block: &str) -> Result<Vec<Definition>, IdlError> {
    let text = strip_comments(block);
    let mut rest = text.trim();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (ext, after) = strip_extended_attributes(rest);
        let open = after
            .find('{')
            .ok_or_else(|| IdlError(format!("no body in {after:?}")))?;
        let close = after[open..]
            .find("};")
            .map(|c| open + c)
            .ok_or_else(|| IdlError(format!("unterminated definition {after:?}")))?;
        let header: Vec<&str> = after[..open].split_whitespace().collect();
        let body = &after[open + 1..close];
        rest = after[close + 2..].trim();
        let (partial, header) = match header.split_first() {
            Some((&"partial", h)) => (true, h),
            _ => (false, &header[..]),
        };
        let (kind, name, parent) = match header {
            [k, n] => (*k, (*n).to_owned(), None),
            [k, n, ":", p] => (*k, (*n).to_owned(), Some((*p).to_owned())),
            _ => return Err(IdlError(format!("cannot read {header:?}"))),
        };
        let parts = || {
            split_top(body, ';')
                .into_iter()
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
        };
        out.push(match kind {
            "interface" => Definition::Interface {
                name,
                partial,
                parent,
                extended_attributes: ext.map(str::to_owned),
                members: parts().into_iter().map(member).collect::<Result<_, _>>()?,
            },
            "dictionary" => Definition::Dictionary {
                name,
                parent,
                members: parts()
                    .into_iter()
                    .map(|m| {
                        let (_, m) = strip_extended_attributes(m);
                        let (required, m) = match m.strip_prefix("required ") {
                            Some(r) => (true, r),
                            None => (false, m),
                        };
                        let (ty, name, default) = typed_name(m)?;
                        Ok(DictionaryMember {
                            name,
                            ty,
                            required,
                            default,
                        })
                    })
                    .collect::<Result<_, IdlError>>()?,
            },
            "enum" => Definition::Enum {
                name,
                values: split_top(body, ',')
                    .into_iter()
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(|v| {
                        v.strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .map(str::to_owned)
                            .ok_or_else(|| IdlError(format!("bad enum value {v}")))
                    })
                    .collect::<Result<_, _>>()?,
            },
            other => return Err(IdlError(format!("unsupported definition {other}"))),
        });
    }
    Ok(out)
}

/// Parses every IDL block of a Bikeshed source.
pub fn parse_source(source: &str) -> Result<Vec<Definition>, IdlError> {
    let mut out = Vec::new();
    for block in idl_blocks(source) {
        out.extend(parse(block)?);
    }
    Ok(out)
}

fn signature(arguments: &[Argument]) -> String {
    arguments
        .iter()
        .map(|a| {
            let mut s = String::new();
            if a.optional {
                s.push_str("optional ");
            }
            s.push_str(&a.name);
            if let Some(d) = &a.default {
                s.push_str(" = ");
                s.push_str(d);
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every item the IDL defines, one line each (an interface line carries its extended
/// attributes, such as `[Exposed=ServiceWorker]`), for example
/// `operation BackgroundFetchManager.fetch(id, requests, optional options = {})`,
/// `readonly attribute BackgroundFetchRegistration.id`,
/// `dictionary member BackgroundFetchOptions.downloadTotal = 0`,
/// `enum value BackgroundFetchResult "success"`. A dictionary also lists the members it
/// inherits from a parent defined in the same IDL
/// (`inherited dictionary member BackgroundFetchOptions.title`).
pub fn items(definitions: &[Definition]) -> Vec<String> {
    let mut out = Vec::new();
    for d in definitions {
        match d {
            Definition::Interface {
                name,
                partial,
                parent,
                extended_attributes,
                members,
            } => {
                let mut line = match (partial, parent) {
                    (true, _) => format!("partial interface {name}"),
                    (false, Some(p)) => format!("interface {name} : {p}"),
                    (false, None) => format!("interface {name}"),
                };
                if let Some(ext) = extended_attributes {
                    line.push_str(&format!(" [{ext}]"));
                }
                out.push(line);
                for m in members {
                    out.push(match m {
                        Member::Attribute {
                            name: a,
                            readonly: true,
                            ..
                        } => format!("readonly attribute {name}.{a}"),
                        Member::Attribute { name: a, .. } => format!("attribute {name}.{a}"),
                        Member::Operation {
                            name: o, arguments, ..
                        } => format!("operation {name}.{o}({})", signature(arguments)),
                        Member::Constructor { arguments } => {
                            format!("constructor {name}({})", signature(arguments))
                        }
                    });
                }
            }
            Definition::Dictionary {
                name,
                parent,
                members,
            } => {
                out.push(match parent {
                    Some(p) => format!("dictionary {name} : {p}"),
                    None => format!("dictionary {name}"),
                });
                let member_line = |prefix: &str, m: &DictionaryMember| {
                    let mut s = format!("{prefix} {name}.{}", m.name);
                    if m.required {
                        s.push_str(" (required)");
                    }
                    if let Some(d) = &m.default {
                        s.push_str(" = ");
                        s.push_str(d);
                    }
                    s
                };
                for m in members {
                    out.push(member_line("dictionary member", m));
                }
                let mut ancestor = parent.clone();
                while let Some(p) = ancestor {
                    ancestor = None;
                    for d in definitions {
                        if let Definition::Dictionary {
                            name: n,
                            parent: pp,
                            members: ms,
                        } = d
                            && *n == p
                        {
                            for m in ms {
                                out.push(member_line("inherited dictionary member", m));
                            }
                            ancestor = pp.clone();
                        }
                    }
                }
            }
            Definition::Enum { name, values } => {
                out.push(format!("enum {name}"));
                for v in values {
                    out.push(format!("enum value {name} {v:?}"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shapes_background_fetch_uses() {
        let defs = parse(
            r#"
[Exposed=(Window,Worker)]
interface M : EventTarget {
  Promise<R> fetch(DOMString id, (RequestInfo or sequence<RequestInfo>) requests, optional O options = {});
  readonly attribute unsigned long long total; // a comment
  attribute EventHandler onprogress;
  constructor(DOMString type, I init);
};
dictionary P { sequence<ImageResource> icons; };
dictionary O : P { unsigned long long downloadTotal = 0; required M m; };
enum E { "", /* empty */ "a-b" };
"#,
        )
        .unwrap();
        assert_eq!(
            items(&defs),
            vec![
                "interface M : EventTarget [Exposed=(Window,Worker)]",
                "operation M.fetch(id, requests, optional options = {})",
                "readonly attribute M.total",
                "attribute M.onprogress",
                "constructor M(type, init)",
                "dictionary P",
                "dictionary member P.icons",
                "dictionary O : P",
                "dictionary member O.downloadTotal = 0",
                "dictionary member O.m (required)",
                "inherited dictionary member O.icons",
                "enum E",
                "enum value E \"\"",
                "enum value E \"a-b\"",
            ]
        );
        let Definition::Interface {
            extended_attributes,
            members,
            ..
        } = &defs[0]
        else {
            panic!()
        };
        assert_eq!(
            extended_attributes.as_deref(),
            Some("Exposed=(Window,Worker)")
        );
        let Member::Operation { arguments, .. } = &members[0] else {
            panic!()
        };
        assert_eq!(arguments[1].ty, "(RequestInfo or sequence<RequestInfo>)");
    }
}
