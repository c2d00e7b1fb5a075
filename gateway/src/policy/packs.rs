//! The starter packs under `policies/`, built into the binary for `trustos profile init`.

/// (pack, [(file name, contents)]).
const PACKS: &[(&str, &[(&str, &str)])] = &[
    (
        "coding-agent",
        &[
            (
                "profile.toml",
                include_str!("../../../policies/coding-agent/profile.toml"),
            ),
            (
                "cases.toml",
                include_str!("../../../policies/coding-agent/cases.toml"),
            ),
            (
                "README.md",
                include_str!("../../../policies/coding-agent/README.md"),
            ),
        ],
    ),
    (
        "saas-agent",
        &[
            (
                "profile.toml",
                include_str!("../../../policies/saas-agent/profile.toml"),
            ),
            (
                "cases.toml",
                include_str!("../../../policies/saas-agent/cases.toml"),
            ),
            (
                "README.md",
                include_str!("../../../policies/saas-agent/README.md"),
            ),
        ],
    ),
    (
        "treasury-agent",
        &[
            (
                "profile.toml",
                include_str!("../../../policies/treasury-agent/profile.toml"),
            ),
            (
                "cases.toml",
                include_str!("../../../policies/treasury-agent/cases.toml"),
            ),
            (
                "README.md",
                include_str!("../../../policies/treasury-agent/README.md"),
            ),
            (
                "intern-limits.cedar",
                include_str!("../../../policies/treasury-agent/intern-limits.cedar"),
            ),
        ],
    ),
    (
        "observer",
        &[
            (
                "profile.toml",
                include_str!("../../../policies/observer/profile.toml"),
            ),
            (
                "cases.toml",
                include_str!("../../../policies/observer/cases.toml"),
            ),
            (
                "README.md",
                include_str!("../../../policies/observer/README.md"),
            ),
        ],
    ),
];

/// The pack names.
pub fn names() -> Vec<&'static str> {
    PACKS.iter().map(|(name, _)| *name).collect()
}

/// The files of a pack.
pub fn files(pack: &str) -> Option<&'static [(&'static str, &'static str)]> {
    PACKS
        .iter()
        .find(|(name, _)| *name == pack)
        .map(|(_, files)| *files)
}
