"""What a person may ask for about the decisions made about them.

- `explain`: a plain-language explanation of one decision for the person it is about
  (EU AI Act Art. 86, GDPR Art. 22). Pure: the offline check rebuilds it.
- `bundle`: every decision about a subject as one JSON bundle that verifies offline (GDPR
  Art. 15), read from the database.
- `check`: `prov verify-subject`, the offline check of a bundle; like `explain`, it needs
  no server dependency, so the client installs and runs it.
"""
