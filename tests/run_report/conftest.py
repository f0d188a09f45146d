from report_study import study_dir  # noqa: F401  (the fixture)
