"""AWS collection through boto3: declarative specs (`specs`) run by a concurrent collector."""
