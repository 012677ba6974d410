//! The appliance keyboard's layout. Keys travel as evdev keycodes, so the server must interpret
//! them with this keyboard's keymap: the appliance picks the XKB names (from its flags or config,
//! the `XKB_DEFAULT_*` environment, or the distribution's /etc/default/keyboard), compiles them
//! with xkbcommon and sends the compiled text, so the server needs no XKB data of its own.

use std::path::Path;

use xkbcommon::xkb;

use crate::input::typing::CharTable;

/// XKB rules for evdev keycodes, which is what the appliance sends.
pub const RULES: &str = "evdev";
/// The common 105-key PC keyboard, which also has the ISO key between left Shift and Z.
pub const DEFAULT_MODEL: &str = "pc105";
pub const DEFAULT_LAYOUT: &str = "us";
/// Where Debian-style systems keep the console's and X's keyboard layout.
pub const SYSTEM_KEYBOARD_FILE: &str = "/etc/default/keyboard";

/// XKB names as one source gives them; any may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XkbNames {
    pub layout: Option<String>,
    pub variant: Option<String>,
    pub model: Option<String>,
    pub options: Option<String>,
}

impl XkbNames {
    /// Empty values count as missing, as in /etc/default/keyboard's `XKBVARIANT=""`.
    fn non_empty(self) -> Self {
        let keep = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        Self {
            layout: keep(self.layout),
            variant: keep(self.variant),
            model: keep(self.model),
            options: keep(self.options),
        }
    }

    /// The `XKB_DEFAULT_LAYOUT`, `…_VARIANT`, `…_MODEL` and `…_OPTIONS` variables.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            layout: var("XKB_DEFAULT_LAYOUT"),
            variant: var("XKB_DEFAULT_VARIANT"),
            model: var("XKB_DEFAULT_MODEL"),
            options: var("XKB_DEFAULT_OPTIONS"),
        }
    }

    /// The shell-style `XKBLAYOUT="de"` assignments of /etc/default/keyboard.
    pub fn from_default_keyboard(text: &str) -> Self {
        let mut names = Self::default();
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once('=') else {
                continue;
            };
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value)
                .to_owned();
            match key.trim() {
                "XKBLAYOUT" => names.layout = Some(value),
                "XKBVARIANT" => names.variant = Some(value),
                "XKBMODEL" => names.model = Some(value),
                "XKBOPTIONS" => names.options = Some(value),
                _ => {}
            }
        }
        names
    }
}

/// Rules, model, layout, variant, options: everything that selects an XKB keymap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rmlvo {
    pub model: String,
    pub layout: String,
    pub variant: String,
    pub options: String,
}

impl Rmlvo {
    /// A layout with the default model and no options (the script's `keymap` command).
    pub fn layout(layout: &str, variant: &str) -> Self {
        Self {
            model: DEFAULT_MODEL.to_owned(),
            layout: layout.to_owned(),
            variant: variant.to_owned(),
            options: String::new(),
        }
    }

    /// Picks names from `sources`, most important first. The variant is taken from the source
    /// that gave the layout (a variant only means something for its layout); model and options
    /// come from the first source that has them. Without any layout: US.
    pub fn resolve(sources: impl IntoIterator<Item = XkbNames>) -> Self {
        let sources: Vec<XkbNames> = sources.into_iter().map(XkbNames::non_empty).collect();
        let (layout, variant) = sources
            .iter()
            .find_map(|s| s.layout.clone().map(|l| (l, s.variant.clone())))
            .unwrap_or_else(|| (DEFAULT_LAYOUT.to_owned(), None));
        let first =
            |field: fn(&XkbNames) -> &Option<String>| sources.iter().find_map(|s| field(s).clone());
        Self {
            model: first(|s| &s.model).unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
            layout,
            variant: variant.unwrap_or_default(),
            options: first(|s| &s.options).unwrap_or_default(),
        }
    }

    /// The appliance's keyboard: `given` (flags or config), then the environment, then
    /// /etc/default/keyboard, then US.
    pub fn system(given: XkbNames) -> Self {
        let env = XkbNames::from_env(|name| std::env::var(name).ok());
        let file = std::fs::read_to_string(Path::new(SYSTEM_KEYBOARD_FILE))
            .map(|text| XkbNames::from_default_keyboard(&text))
            .unwrap_or_default();
        Self::resolve([given, env, file])
    }

    /// How the keymap is named in logs and on the wire: "de" or "de(nodeadkeys)".
    pub fn name(&self) -> String {
        if self.variant.is_empty() {
            self.layout.clone()
        } else {
            format!("{}({})", self.layout, self.variant)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeymapError {
    #[error("XKB name `{0}` contains a NUL byte")]
    Nul(String),
    #[error(
        "cannot compile an XKB keymap for rules {RULES}, model {model}, layout {layout}, variant \
         \"{variant}\", options \"{options}\": unknown layout or variant, or no XKB data \
         (install xkb-data)"
    )]
    Compile {
        model: String,
        layout: String,
        variant: String,
        options: String,
    },
}

/// A compiled keymap, in the forms the appliance needs it.
#[derive(Debug, Clone)]
pub struct Layout {
    /// What goes to the server (in Hello, or as `InputMessage::Keymap`).
    pub wire: wayray_protocol::Keymap,
    /// Which keys type which characters, for scripts.
    pub chars: CharTable,
}

impl Layout {
    pub fn compile(names: &Rmlvo) -> Result<Self, KeymapError> {
        let keymap = compile(names)?;
        Ok(Self {
            wire: wayray_protocol::Keymap {
                text: keymap.get_as_string(xkb::KEYMAP_FORMAT_TEXT_V1),
                layout: names.name(),
            },
            chars: CharTable::new(&keymap),
        })
    }
}

fn compile(names: &Rmlvo) -> Result<xkb::Keymap, KeymapError> {
    for name in [&names.model, &names.layout, &names.variant, &names.options] {
        // xkbcommon's bindings would panic on these.
        if name.contains('\0') {
            return Err(KeymapError::Nul(name.clone()));
        }
    }
    // The names are already resolved: xkbcommon must not fill gaps from XKB_DEFAULT_* again.
    let context = xkb::Context::new(xkb::CONTEXT_NO_ENVIRONMENT_NAMES);
    let options = (!names.options.is_empty()).then(|| names.options.clone());
    xkb::Keymap::new_from_names(
        &context,
        RULES,
        &names.model,
        &names.layout,
        &names.variant,
        options,
        xkb::KEYMAP_COMPILE_NO_FLAGS,
    )
    .ok_or_else(|| KeymapError::Compile {
        model: names.model.clone(),
        layout: names.layout.clone(),
        variant: names.variant.clone(),
        options: names.options.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(layout: Option<&str>, variant: Option<&str>) -> XkbNames {
        XkbNames {
            layout: layout.map(str::to_owned),
            variant: variant.map(str::to_owned),
            ..XkbNames::default()
        }
    }

    #[test]
    fn first_source_with_a_layout_wins_and_brings_its_variant() {
        let file = XkbNames::from_default_keyboard(
            "# KEYBOARD CONFIGURATION FILE\nXKBMODEL=\"pc104\"\nXKBLAYOUT=\"de\"\nXKBVARIANT=\"nodeadkeys\"\nXKBOPTIONS='ctrl:nocaps'\nBACKSPACE=\"guess\"\n",
        );
        assert_eq!(
            file,
            XkbNames {
                layout: Some("de".into()),
                variant: Some("nodeadkeys".into()),
                model: Some("pc104".into()),
                options: Some("ctrl:nocaps".into()),
            }
        );
        let from_file = Rmlvo::resolve([XkbNames::default(), file.clone()]);
        assert_eq!(from_file.name(), "de(nodeadkeys)");
        assert_eq!(from_file.model, "pc104");

        // A layout given on the command line does not pick up the file's variant.
        let given = Rmlvo::resolve([names(Some("fr"), None), file]);
        assert_eq!(given.name(), "fr");
        assert_eq!(given.options, "ctrl:nocaps");

        // Empty values are missing values.
        let env = XkbNames::from_env(|v| (v == "XKB_DEFAULT_LAYOUT").then(String::new));
        assert_eq!(Rmlvo::resolve([env]), Rmlvo::layout("us", ""));
    }

    #[test]
    fn compiles_and_names_the_layout() {
        let layout = Layout::compile(&Rmlvo::layout("de", "nodeadkeys")).unwrap();
        assert_eq!(layout.wire.layout, "de(nodeadkeys)");
        assert!(
            layout.wire.text.starts_with("xkb_keymap"),
            "{}",
            &layout.wire.text[..40]
        );

        let err = Layout::compile(&Rmlvo::layout("no-such-layout", ""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no-such-layout"), "{err}");
        assert!(matches!(
            Layout::compile(&Rmlvo::layout("d\0e", "")),
            Err(KeymapError::Nul(_))
        ));
    }
}
