"""boto3 only: clients are injected, nothing here prints or reads Invoke config."""
