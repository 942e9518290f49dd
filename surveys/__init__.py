"""Follow-up surveys (回访): definitions in a subset of SurveyJS, their logic and rules, pure.

Knows no HTTP, database or gateway: the pages (gateway/web/), the store (gateway/storage/)
and the voice call (a flow built from the definition) use it.

- definition: the survey files (config/surveys/*.json) read and checked; Survey, Page, Question
- expressions: the visibleIf expressions (parse, evaluate)
- answers: a posted page read into typed answers and errors; problems, completeness, outcome
- products: config/surveys/products.yaml, the product context, the cooling-off deadline
- tokens, otp: link tokens and one-time codes; audit: the events' hash chain; signals: flags
- canonical, errors: canonical JSON for hashes; SurveyError
"""
