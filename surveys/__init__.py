"""Follow-up surveys (回访): definitions in a subset of SurveyJS, their logic and rules, pure.

Knows no HTTP, database or gateway: the pages (gateway/web/), the store (gateway/storage/)
and the voice call (a flow built from the definition) use it.
"""
