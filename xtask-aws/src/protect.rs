//! Protected stages: `production`, plus the ones `tally.toml` lists, are deployed and destroyed only when named.
//!
//! ```toml
//! [deploy]
//! protected_stages = ["staging"]   # production is always protected
//! ```
//!
//! `deploy` and `destroy` of a protected stage need `--stage NAME` *and* a confirmation that names it
//! (`--yes-i-mean NAME`, or the name typed on a terminal); `--yes` alone is refused. A stage taken from the git
//! branch, or a pull request's preview (`--pr N`), never reaches a protected stage. Stage names that only look
//! like a protected one are refused outright; see [`skeleton`].
//!
//! Why exact names are enough for the stack itself: a stage keeps its text as its label only when the text is
//! a clean label (`[a-z0-9]+(-[a-z0-9]+)*`); anything else (`Production`, `production/`, `production\n`, a
//! Cyrillic `р`) is sanitised and followed by a hash of the original text (`tally-production--<hash>`), so only
//! the exact text `production` names the stack `tally-production` and its resources. The look-alike refusal is
//! the second wall, for people: `tally-production--<hash>` in a listing is easily taken for production.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context};
use tally_deploy::Confirm;
use tally_pipeline::Stage;

/// Always protected, whatever `tally.toml` says.
pub const ALWAYS: &str = "production";

/// The `tally.toml` section and key (read and checked by `xtask::options`).
pub use xtask::options::{deploy_section as section, DEPLOY_SECTION as SECTION};

/// The protected stage names of this checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    names: BTreeSet<String>,
}

impl Protected {
    /// `production` and the names in `<root>/tally.toml`'s `[deploy] protected_stages`.
    pub fn load(root: &Path) -> anyhow::Result<Protected> {
        let path = root.join(crate::options::FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("while reading {}", path.display())),
        };
        let doc: toml::Table = text
            .parse()
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        let names = match doc.get(SECTION) {
            Some(toml::Value::Table(table)) => section(table),
            Some(_) => bail!("`{SECTION}` must be a table"),
            None => Ok(Vec::new()),
        }
        .with_context(|| format!("while reading {}", path.display()))?;
        Ok(Protected::new(names))
    }

    pub fn new(names: impl IntoIterator<Item = String>) -> Protected {
        let mut names: BTreeSet<String> = names.into_iter().collect();
        names.insert(ALWAYS.to_owned());
        Protected { names }
    }

    pub fn names(&self) -> &BTreeSet<String> {
        &self.names
    }

    /// The protected name `raw` is exactly.
    fn exact(&self, raw: &str) -> Option<&str> {
        self.names.get(raw).map(String::as_str)
    }

    /// The protected name `raw` is not, but looks like.
    fn look_alike(&self, raw: &str) -> Option<&str> {
        let shape = skeleton(raw);
        self.names
            .iter()
            .find(|name| name.as_str() != raw && skeleton(name) == shape)
            .map(String::as_str)
    }
}

/// What a stage name looks like to a person: lowercase, look-alike letters and digits folded to one ASCII
/// letter (Cyrillic `р` → `p`, `0` → `o`, `1`/`i`/`I` → `l`, fullwidth forms → ASCII, accents dropped), and
/// everything else — whitespace, punctuation, control and invisible characters, combining marks — left out.
/// Two names with one skeleton can be mistaken for each other in a listing or a pull request title.
pub fn skeleton(text: &str) -> String {
    text.chars().filter_map(fold).collect()
}

fn fold(c: char) -> Option<char> {
    let c = fullwidth_to_ascii(c);
    let lower = c.to_lowercase().next().unwrap_or(c);
    Some(match lower {
        // `i`, `l` and `1` fold to one shape.
        '1' | 'i' | 'l' | '|' | 'ı' | 'ł' => 'l',
        '0' => 'o',
        'a'..='z' | '2'..='9' => lower,
        _ => look_alike_letter(lower)?,
    })
}

/// `U+FF01..=U+FF5E` (fullwidth ASCII) → ASCII.
fn fullwidth_to_ascii(c: char) -> char {
    match u32::from(c) {
        code @ 0xFF01..=0xFF5E => char::from_u32(code - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

/// Letters of other scripts (and accented Latin) that render like one ASCII letter; `None` for everything that
/// is not a letter or digit (dropped from the skeleton). Other letters stay themselves: they do not look
/// like ASCII.
fn look_alike_letter(c: char) -> Option<char> {
    Some(match c {
        'а' | 'α' | 'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' => 'a',
        'в' | 'β' | 'ь' => 'b',
        'с' | 'ϲ' | 'ç' | 'ć' | 'č' => 'c',
        'ԁ' | 'ď' | 'đ' => 'd',
        'е' | 'ε' | 'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ё' => 'e',
        'ғ' => 'f',
        'ɡ' | 'ğ' => 'g',
        'һ' | 'н' | 'η' => 'h',
        'і' | 'ї' | 'ι' | 'ì' | 'í' | 'î' | 'ï' | 'ӏ' => 'l',
        'ј' | 'ϳ' => 'j',
        'к' | 'κ' => 'k',
        'м' | 'μ' => 'm',
        'п' | 'ո' | 'ñ' | 'ń' | 'ň' => 'n',
        'о' | 'ο' | 'σ' | 'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' => 'o',
        'р' | 'ρ' | 'þ' => 'p',
        'ԛ' => 'q',
        'г' | 'ř' => 'r',
        'ѕ' | 'ś' | 'š' | 'ş' => 's',
        'т' | 'τ' | 'ť' => 't',
        'υ' | 'ս' | 'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' => 'u',
        'ν' | 'ѵ' => 'v',
        'ԝ' | 'ω' | 'ш' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'ү' | 'γ' | 'ý' | 'ÿ' => 'y',
        'ż' | 'ž' | 'ź' => 'z',
        c if c.is_alphanumeric() => c,
        _ => return None,
    })
}

/// Where the stage came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--stage NAME`.
    Explicit,
    /// The current git branch (no `--stage`).
    Branch,
    /// `--pr N`: a pull request's preview.
    PullRequest,
}

/// What the command line said to go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consent {
    /// Neither flag.
    None,
    /// `--yes`.
    Yes,
    /// `--yes-i-mean NAME`.
    Named(String),
}

/// How a command may go on with a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Not protected: go on, confirming as `confirm` says.
    Unprotected(Confirm),
    /// Protected and named twice on the command line: go on.
    Protected,
    /// Protected, named by `--stage`, not yet confirmed: the name must be typed on the terminal.
    TypeTheName,
}

/// Decides whether `command` (`deploy`, `destroy`) may act on `stage`. `terminal`: stdin is a terminal.
pub fn admit(
    command: &str,
    stage: &Stage,
    origin: Origin,
    consent: &Consent,
    protected: &Protected,
    terminal: bool,
) -> anyhow::Result<Admission> {
    let raw = stage.raw();
    let Some(name) = protected.exact(raw) else {
        if let Some(name) = protected.look_alike(raw) {
            bail!(
                "stage {raw:?} looks like the protected stage `{name}` (it differs only by case, look-alike \
                 characters, whitespace or punctuation); {command} refuses it so that nobody takes it for `{name}`. \
                 Name the stage so that it cannot be confused: --stage <another name>"
            );
        }
        return unprotected(command, raw, consent, terminal).map(Admission::Unprotected);
    };
    let to_type = format!("cargo xtask {command} --stage {name} --yes-i-mean {name}");
    match (origin, consent) {
        (Origin::PullRequest, _) => bail!(
            "a pull request's preview can never be the protected stage `{name}`; {command} refused"
        ),
        (Origin::Branch, _) => bail!(
            "the stage `{name}` came from the git branch's name, and `{name}` is protected: a protected stage is only \
             reached when named on the command line. Run `{to_type}`"
        ),
        (Origin::Explicit, Consent::Named(given)) if given == name => Ok(Admission::Protected),
        (Origin::Explicit, Consent::Named(given)) => bail!(
            "--yes-i-mean {given:?} does not name the stage `{name}`; run `{to_type}`"
        ),
        (Origin::Explicit, Consent::Yes) => bail!(
            "--yes is not enough for the protected stage `{name}`: the confirmation must name it. Run `{to_type}`"
        ),
        (Origin::Explicit, Consent::None) if terminal => Ok(Admission::TypeTheName),
        (Origin::Explicit, Consent::None) => bail!(
            "the protected stage `{name}` needs a confirmation that names it, and there is no terminal to type it \
             on. Run `{to_type}`"
        ),
    }
}

fn unprotected(
    command: &str,
    raw: &str,
    consent: &Consent,
    terminal: bool,
) -> anyhow::Result<Confirm> {
    Ok(match consent {
        Consent::Yes => Confirm::Yes,
        Consent::Named(given) if given == raw => Confirm::Yes,
        Consent::Named(given) => bail!(
            "--yes-i-mean {given:?} does not name the stage {raw:?} that {command} would act on"
        ),
        Consent::None if terminal => Confirm::Ask,
        Consent::None => Confirm::Refuse,
    })
}

/// The consent of `--yes` / `--yes-i-mean S` (the parser refuses both together).
pub fn consent(yes: bool, yes_i_mean: Option<String>) -> Consent {
    match (yes_i_mean, yes) {
        (Some(name), _) => Consent::Named(name),
        (None, true) => Consent::Yes,
        (None, false) => Consent::None,
    }
}

/// The stage a `deploy` / `destroy` acts on, whether it is protected, and how to confirm what needs it.
#[derive(Debug)]
pub struct Target {
    pub stage: Stage,
    pub protected: bool,
    pub confirm: Confirm,
}

/// Resolves and admits the stage of `command` from its flags (`--stage`, `--pr`, `--yes`, `--yes-i-mean`),
/// before anything is built or any AWS call is made. On a terminal, a protected stage's name is asked for.
pub fn target(
    command: &str,
    stage: Option<&str>,
    pr: Option<&str>,
    consent: Consent,
) -> anyhow::Result<Target> {
    use std::io::IsTerminal;
    let (stage, origin) = match (stage, pr) {
        (Some(_), Some(_)) => bail!("give --stage or --pr, not both"),
        (None, Some(number)) => (pull_request_stage(number)?, Origin::PullRequest),
        (Some(_), None) => (crate::stage::resolve(stage)?, Origin::Explicit),
        (None, None) => (crate::stage::resolve(None)?, Origin::Branch),
    };
    let protected = Protected::load(&crate::workspace_root())?;
    let terminal = std::io::stdin().is_terminal();
    let (protected, confirm) = match admit(command, &stage, origin, &consent, &protected, terminal)?
    {
        Admission::Unprotected(confirm) => (false, confirm),
        Admission::Protected => (true, Confirm::Yes),
        Admission::TypeTheName => {
            type_the_name(command, stage.raw())?;
            // The stage is confirmed; a change that loses data is still asked about.
            (true, Confirm::Ask)
        }
    };
    Ok(Target {
        stage,
        protected,
        confirm,
    })
}

fn type_the_name(command: &str, name: &str) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    eprint!("`{name}` is a protected stage. Type its name to {command} it: ");
    let _ = std::io::stderr().flush();
    let mut typed = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut typed)
        .context("while reading the stage name from the terminal")?;
    if typed.trim_end_matches(['\n', '\r']) != name {
        bail!("the name typed was not `{name}`; nothing was done");
    }
    Ok(())
}

/// The stage of a pull request's preview: `pr-<N>`, from the number alone (never from a branch name).
pub fn pull_request_stage(number: &str) -> anyhow::Result<Stage> {
    let valid = !number.is_empty()
        && number.len() <= 9
        && number.bytes().all(|b| b.is_ascii_digit())
        && !number.starts_with('0');
    if !valid {
        bail!(
            "--pr {number:?}: expected a pull request number (digits, no leading zero), as \
             `github.event.pull_request.number` gives it"
        );
    }
    Ok(Stage::new(&format!("pr-{number}")))
}

/// Whether `stage` is a pull request's preview (`pr-<N>`).
pub fn is_pull_request_stage(stage: &str) -> bool {
    stage
        .strip_prefix("pr-")
        .is_some_and(|n| pull_request_stage(n).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protected() -> Protected {
        Protected::new(["staging".to_owned()])
    }

    fn admit_as(
        raw: &str,
        origin: Origin,
        consent: Consent,
        terminal: bool,
    ) -> Result<Admission, String> {
        admit(
            "deploy",
            &Stage::new(raw),
            origin,
            &consent,
            &protected(),
            terminal,
        )
        .map_err(|e| format!("{e:#}"))
    }

    #[track_caller]
    fn refused(got: Result<Admission, String>, part: &str) {
        let err = got.expect_err("refused");
        assert!(err.contains(part), "{err}");
    }

    #[test]
    fn a_protected_stage_needs_its_name_twice() {
        let named = || Consent::Named("production".into());
        assert_eq!(
            admit_as("production", Origin::Explicit, named(), false),
            Ok(Admission::Protected)
        );
        assert_eq!(
            admit_as(
                "staging",
                Origin::Explicit,
                Consent::Named("staging".into()),
                false
            ),
            Ok(Admission::Protected)
        );
        refused(
            admit_as("production", Origin::Explicit, Consent::Yes, false),
            "--yes is not enough for the protected stage `production`: the confirmation must name it. Run \
             `cargo xtask deploy --stage production --yes-i-mean production`",
        );
        refused(
            admit_as("production", Origin::Explicit, Consent::Yes, true),
            "--yes is not enough",
        );
        refused(
            admit_as(
                "production",
                Origin::Explicit,
                Consent::Named("staging".into()),
                false,
            ),
            "--yes-i-mean \"staging\" does not name the stage `production`",
        );
        refused(
            admit_as("production", Origin::Explicit, Consent::None, false),
            "no terminal to type it on",
        );
        assert_eq!(
            admit_as("production", Origin::Explicit, Consent::None, true),
            Ok(Admission::TypeTheName)
        );
        // Two protected names that look alike are each reachable by their exact text.
        let twins = Protected::new(["pr0duction".to_owned()]);
        for name in ["production", "pr0duction"] {
            let got = admit(
                "deploy",
                &Stage::new(name),
                Origin::Explicit,
                &Consent::Named(name.to_owned()),
                &twins,
                false,
            );
            assert_eq!(got.ok(), Some(Admission::Protected), "{name}");
        }
    }

    #[test]
    fn a_branch_or_a_preview_never_reaches_a_protected_stage() {
        for consent in [
            Consent::None,
            Consent::Yes,
            Consent::Named("production".into()),
        ] {
            for terminal in [false, true] {
                refused(
                    admit_as("production", Origin::Branch, consent.clone(), terminal),
                    "came from the git branch's name",
                );
                refused(
                    admit_as("production", Origin::PullRequest, consent.clone(), terminal),
                    "a pull request's preview can never be the protected stage `production`",
                );
            }
        }
        // Even a tally.toml that protects a `pr-N` name keeps previews off it.
        let odd = Protected::new(["pr-7".to_owned()]);
        let got = admit(
            "deploy",
            &pull_request_stage("7").expect("number"),
            Origin::PullRequest,
            &Consent::Yes,
            &odd,
            false,
        );
        assert!(got.is_err(), "{got:?}");
    }

    #[test]
    fn hostile_look_alikes_are_refused() {
        let hostile = [
            "Production",
            "PRODUCTION",
            "production/",
            "/production",
            "production\n",
            " production",
            "production ",
            "pro duction",
            "pro_duction",
            "pro-duction",
            "production.",
            "prod\u{200B}uction",       // zero-width space
            "production\u{0301}",       // combining acute accent
            "\u{0440}roduction",        // Cyrillic р
            "pr\u{043E}ducti\u{043E}n", // Cyrillic о
            "product\u{0456}on",        // Cyrillic і
            "pr0duct1on",
            "productlon",
            "ｐｒｏｄｕｃｔｉｏｎ", // fullwidth
            "prοductiοn",           // Greek ο
            "prodúction",
            "Staging",
            "stag1ng",
        ];
        for raw in hostile {
            for origin in [Origin::Explicit, Origin::Branch] {
                refused(
                    admit_as(raw, origin, Consent::Named(raw.to_owned()), true),
                    "looks like the protected stage",
                );
            }
            // None of them names the protected stack: the stage grammar hashes every non-clean text.
            assert_ne!(Stage::new(raw).stack_name(), "tally-production", "{raw:?}");
            assert_ne!(Stage::new(raw).stack_name(), "tally-staging", "{raw:?}");
        }
    }

    #[test]
    fn ordinary_stages_confirm_as_before() {
        for raw in [
            "main",
            "feature/x",
            "production-2",
            "prod",
            "pr-12",
            "productions",
        ] {
            assert_eq!(
                admit_as(raw, Origin::Branch, Consent::Yes, false),
                Ok(Admission::Unprotected(Confirm::Yes)),
                "{raw}"
            );
        }
        assert_eq!(
            admit_as("main", Origin::Explicit, Consent::None, true),
            Ok(Admission::Unprotected(Confirm::Ask))
        );
        assert_eq!(
            admit_as("main", Origin::Explicit, Consent::None, false),
            Ok(Admission::Unprotected(Confirm::Refuse))
        );
        assert_eq!(
            admit_as(
                "main",
                Origin::Explicit,
                Consent::Named("main".into()),
                false
            ),
            Ok(Admission::Unprotected(Confirm::Yes))
        );
        refused(
            admit_as(
                "main",
                Origin::Explicit,
                Consent::Named("dev".into()),
                false,
            ),
            "does not name the stage \"main\"",
        );
    }

    #[test]
    fn pull_request_stages() {
        assert_eq!(
            pull_request_stage("123").expect("number").stack_name(),
            "tally-pr-123"
        );
        for bad in [
            "",
            "0",
            "012",
            "12a",
            "production",
            "1 ",
            "-1",
            "1234567890",
            "１２",
        ] {
            let err = format!("{:#}", pull_request_stage(bad).expect_err(bad));
            assert!(err.contains("expected a pull request number"), "{err}");
        }
        assert!(is_pull_request_stage("pr-5"));
        assert!(!is_pull_request_stage("pr-05"));
        assert!(!is_pull_request_stage("feature-pr-5"));
        assert!(!is_pull_request_stage("pr-"));
    }

    #[test]
    fn the_list_comes_from_tally_toml() {
        let parse = |text: &str| -> anyhow::Result<Vec<String>> {
            let doc: toml::Table = text.parse()?;
            match doc.get(SECTION) {
                Some(toml::Value::Table(t)) => section(t),
                _ => Ok(Vec::new()),
            }
        };
        assert_eq!(
            parse("[deploy]\nprotected_stages = [\"staging\", \"demo\"]").expect("list"),
            ["staging", "demo"]
        );
        let err = |text: &str| format!("{:#}", parse(text).expect_err(text));
        assert!(err("[deploy]\nprotected = []").contains("unknown option `protected`"));
        assert!(err("[deploy]\nprotected_stages = \"staging\"").contains("expected a list"));
        assert!(err("[deploy]\nprotected_stages = [\"Staging\"]").contains("not a stage name"));
        assert!(err("[deploy]\nprotected_stages = [1]").contains("is not a string"));

        let dir = std::env::temp_dir().join(format!("tally-protect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        assert_eq!(
            Protected::load(&dir).expect("no file").names().len(),
            1,
            "production only"
        );
        std::fs::write(
            dir.join(crate::options::FILE),
            "[deploy]\nprotected_stages = [\"staging\"]\n",
        )
        .expect("write");
        let loaded = Protected::load(&dir).expect("file");
        assert_eq!(
            loaded.names().iter().collect::<Vec<_>>(),
            ["production", "staging"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
