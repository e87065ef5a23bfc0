"""Prints, one hex line per record, what a read_committed consumer of Confluent's
Python client (confluent-kafka, its own build of librdkafka) reads from a topic, from
the beginning of every partition to its end: read_committed.py BOOTSTRAP TOPIC."""

import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

bootstrap, topic = sys.argv[1], sys.argv[2]
consumer = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": "fungi-test-python-reader",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
    }
)
partitions = list(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
ended = set()
deadline = time.monotonic() + 60
while len(ended) < len(partitions):
    if time.monotonic() > deadline:
        sys.exit(f"partitions {sorted(set(partitions) - ended)} did not reach their end")
    message = consumer.poll(1.0)
    if message is None:
        continue
    if message.error():
        if message.error().code() == KafkaError._PARTITION_EOF:
            ended.add(message.partition())
            continue
        sys.exit(str(message.error()))
    print(message.value().hex())
consumer.close()
