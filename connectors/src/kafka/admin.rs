//! What a Kafka cluster holds: its topics, their partitions and offsets, and the consumer
//! groups reading them (for `SHOW TOPICS` and `SHOW TOPIC DETAILS`).

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::connection::{KafkaConnection, METADATA_TIMEOUT, blocking};
use crate::error::Result;

/// A topic and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSummary {
    /// Its name.
    pub name: String,
    /// How many partitions it has.
    pub partitions: usize,
    /// How many replicas its first partition has.
    pub replicas: usize,
}

/// One partition of a topic, and one consumer group's position in it (a row per group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDetail {
    /// The partition.
    pub partition: i32,
    /// The broker leading it.
    pub leader: i32,
    /// The brokers holding a replica.
    pub replicas: Vec<i32>,
    /// The oldest offset kept.
    pub low: i64,
    /// The offset the next message will get.
    pub high: i64,
    /// A consumer group with an offset committed here, if any.
    pub group: Option<String>,
    /// That group's committed offset.
    pub committed: Option<i64>,
}

impl PartitionDetail {
    /// Messages the group has not read: the high offset less its committed one.
    pub fn lag(&self) -> Option<i64> {
        self.committed.map(|c| (self.high - c).max(0))
    }
}

impl KafkaConnection {
    fn admin_consumer(&self, group: Option<&str>) -> Result<BaseConsumer> {
        let mut config = self.client_config(&[]);
        if let Some(group) = group {
            config.set("group.id", group);
        }
        config.create().map_err(|e| self.error("connecting to", e))
    }

    /// Every topic, by name (internal ones, starting with `__`, left out).
    pub async fn topics(&self) -> Result<Vec<TopicSummary>> {
        let connection = self.clone();
        blocking(move || connection.list_topics()).await
    }

    /// `topic`'s partitions with their offsets, and every consumer group's committed offset
    /// and lag in each.
    pub async fn topic_details(&self, topic: &str) -> Result<Vec<PartitionDetail>> {
        let (connection, topic) = (self.clone(), topic.to_string());
        blocking(move || connection.describe_topic(&topic)).await
    }

    pub(crate) fn list_topics(&self) -> Result<Vec<TopicSummary>> {
        let consumer = self.admin_consumer(None)?;
        let metadata = consumer
            .fetch_metadata(None, METADATA_TIMEOUT)
            .map_err(|e| self.error("listing the topics of", e))?;
        let mut topics: Vec<TopicSummary> = metadata
            .topics()
            .iter()
            .filter(|t| !t.name().starts_with("__"))
            .map(|t| TopicSummary {
                name: t.name().to_string(),
                partitions: t.partitions().len(),
                replicas: t.partitions().first().map_or(0, |p| p.replicas().len()),
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    fn describe_topic(&self, topic: &str) -> Result<Vec<PartitionDetail>> {
        let consumer = self.admin_consumer(None)?;
        let metadata = consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|e| self.error(&format!("reading topic '{topic}' from"), e))?;
        let Some(found) = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        else {
            return Err(self.missing(topic));
        };
        let mut partitions = Vec::new();
        let mut wanted = TopicPartitionList::new();
        for p in found.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), METADATA_TIMEOUT)
                .map_err(|e| self.error(&format!("reading the offsets of '{topic}' from"), e))?;
            wanted.add_partition(topic, p.id());
            partitions.push(PartitionDetail {
                partition: p.id(),
                leader: p.leader(),
                replicas: p.replicas().to_vec(),
                low,
                high,
                group: None,
                committed: None,
            });
        }
        partitions.sort_by_key(|p| p.partition);
        let groups = consumer
            .fetch_group_list(None, METADATA_TIMEOUT)
            .map_err(|e| self.error("listing the consumer groups of", e))?;
        let mut names: Vec<String> = groups
            .groups()
            .iter()
            .map(|g| g.name().to_string())
            .collect();
        names.sort();
        let mut rows = partitions.clone();
        for group in names {
            let committed = self
                .admin_consumer(Some(&group))?
                .committed_offsets(wanted.clone(), METADATA_TIMEOUT)
                .map_err(|e| self.error(&format!("reading group '{group}' from"), e))?;
            for element in committed.elements() {
                let Offset::Offset(offset) = element.offset() else {
                    continue;
                };
                if let Some(partition) = partitions
                    .iter()
                    .find(|p| p.partition == element.partition())
                {
                    rows.push(PartitionDetail {
                        group: Some(group.clone()),
                        committed: Some(offset),
                        ..partition.clone()
                    });
                }
            }
        }
        Ok(rows)
    }
}
