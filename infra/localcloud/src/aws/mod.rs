//! The local AWS endpoint: Kinesis, DynamoDB, SQS and S3 over their wire protocols on one port.
