"""What production says: the issues prodloop holds, one error's scrubbed context, deploys."""
