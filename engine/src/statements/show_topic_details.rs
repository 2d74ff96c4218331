//! `SHOW TOPIC DETAILS 'name'`: a topic's partitions, their offsets, and the consumer groups
//! reading them with their lag.

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::Result;
use crate::listing;
use crate::statements::kind::{Execution, StatementKind, StatementOutput};
use crate::statements::parser::{StatementSyntax, StatementTokens, quoted_name};

/// `SHOW TOPIC DETAILS 'name'`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowTopicDetails {
    /// The topic.
    pub topic: String,
}

pub(crate) const SYNTAX: StatementSyntax = StatementSyntax {
    leading: &["SHOW TOPIC DETAILS"],
    synopsis: "SHOW",
    parse,
};

fn parse(statement: &StatementTokens) -> Result<Box<dyn StatementKind>> {
    let sig = &statement.sig;
    let topic = quoted_name(&sig[3..], sig[2], "the topic's name")?;
    Ok(Box::new(ShowTopicDetails { topic }))
}

impl StatementKind for ShowTopicDetails {
    fn execute<'a>(&'a self, run: Execution<'a>) -> BoxFuture<'a, Result<StatementOutput>> {
        async move {
            let details = run.engine.kafka.topic_details(&self.topic).await?;
            StatementOutput::rows(listing::show_topic_details(&details)?)
        }
        .boxed()
    }
}
