//! `create -f`: decode every manifest first, then create each object,
//! going on after server errors as kubectl does.

use super::{kind_of, load_or_report};
use crate::args::FileArgs;
use crate::context::Ctx;
use crate::errors::Outcome;
use crate::output::print_line;
use crate::resources::object_ref;
use anyhow::Result;

pub async fn run(ctx: &Ctx, a: &FileArgs) -> Result<()> {
    let loaded = load_or_report(&a.files, a.recursive)?;
    let mut outcome = Outcome::new();
    for l in loaded {
        let mut obj = l.object;
        if let Err(e) = ctx.place(&mut obj) {
            outcome.fail(&e);
            continue;
        }
        let kind = kind_of(&obj)?;
        match ctx.client.create(obj).await {
            Ok(created) => print_line(&format!("{} created", object_ref(kind, created.name()))),
            Err(s) => outcome.fail_status(&s),
        }
    }
    outcome.finish()
}
