//! The options chosen by a word (`--backend cpu`, `--kv-type q8_0`, `pooling: "mean"`): each
//! enum lists its values and their names once ([`Named::NAMES`]); its `name`, `FromStr` (with
//! the error that lists the choices) and `Display` follow from that list ([`named!`]).

use crate::error::{echo, Error, Result};

/// An enum whose values are chosen by name.
pub trait Named: Copy + PartialEq + 'static {
    /// What the option is called in messages ("backend").
    const WHAT: &'static str;
    /// Every value with the words that name it: the first is its name, any others aliases
    /// (`webgpu` for the backend `gpu`).
    const NAMES: &'static [(Self, &'static [&'static str])];
}

/// The name of `v` (the first of its words).
pub fn name<T: Named>(v: T) -> &'static str {
    T::NAMES.iter().find(|(x, _)| *x == v).and_then(|(_, words)| words.first().copied()).unwrap_or("")
}

/// The value `s` names (surrounding white space and case ignored), or an error that lists the
/// names.
pub fn parse<T: Named>(s: &str) -> Result<T> {
    let t = s.trim().to_ascii_lowercase();
    T::NAMES.iter().find(|(_, words)| words.contains(&t.as_str())).map(|(v, _)| *v).ok_or_else(|| {
        let choices: Vec<String> = T::NAMES
            .iter()
            .map(|(_, words)| match words {
                [one] => one.to_string(),
                [first, rest @ ..] => format!("{first} ({})", rest.join(", ")),
                [] => String::new(),
            })
            .collect();
        let list = match choices.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, init)) => format!("{} or {last}", init.join(", ")),
            None => String::new(),
        };
        Error::InvalidArgument(format!("{} must be {list}, got {}", T::WHAT, echo(s)))
    })
}

/// `name()`, `FromStr` and `Display` for a [`Named`] enum.
macro_rules! named {
    ($t:ty) => {
        impl $t {
            /// The option's name (see [`crate::named`]).
            pub fn name(self) -> &'static str {
                $crate::named::name(self)
            }
        }

        impl std::str::FromStr for $t {
            type Err = $crate::error::Error;
            fn from_str(s: &str) -> $crate::error::Result<Self> {
                $crate::named::parse(s)
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
pub(crate) use named;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Fruit {
        Apple,
        Pear,
        Fig,
    }

    impl Named for Fruit {
        const WHAT: &'static str = "fruit";
        const NAMES: &'static [(Self, &'static [&'static str])] =
            &[(Fruit::Apple, &["apple"]), (Fruit::Pear, &["pear", "perry"]), (Fruit::Fig, &["fig"])];
    }
    named!(Fruit);

    #[test]
    fn names_parse_print_and_list_the_choices() {
        for v in [Fruit::Apple, Fruit::Pear, Fruit::Fig] {
            assert_eq!(v.to_string().parse::<Fruit>().unwrap(), v);
        }
        assert_eq!(" PERRY ".parse::<Fruit>().unwrap(), Fruit::Pear);
        assert_eq!(Fruit::Pear.name(), "pear");
        let e = "plum".parse::<Fruit>().unwrap_err().to_string();
        assert!(e.contains("fruit must be apple, pear (perry) or fig, got 'plum'"), "{e}");
    }
}
