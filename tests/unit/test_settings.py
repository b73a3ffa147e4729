import pytest

from retail_stream.settings import ENVIRONMENT, Settings, SettingsError


def test_defaults_need_no_environment():
    settings = Settings.from_env({})
    assert settings.stream_name == "retail-transactions"
    assert settings.warehouse_dialect == "postgres"
    assert settings.jsonpaths_uri == "s3://retail-raw/jsonpaths/transactions.jsonpaths"


def test_values_are_read_and_typed():
    settings = Settings.from_env({
        "KINESIS_STREAM_NAME": "s1", "FLUSH_MAX_RECORDS": "500", "FLUSH_MAX_AGE_SECONDS": "2.5",
        "AWS_DEFAULT_REGION": "eu-west-1",
    })
    assert (settings.stream_name, settings.flush_max_records, settings.flush_max_age_seconds) == ("s1", 500, 2.5)
    assert settings.region == "eu-west-1"
    assert Settings.from_env({"AWS_REGION": "eu-north-1", "AWS_DEFAULT_REGION": "x"}).region == "eu-north-1"


@pytest.mark.parametrize(
    "variable, value",
    [
        ("FLUSH_MAX_RECORDS", "many"),
        ("FLUSH_MAX_RECORDS", "0"),
        ("S3_BUCKET", "Not_A_Bucket"),
        ("S3_RAW_PREFIX", "/absolute"),
        ("WAREHOUSE_DIALECT", "mysql"),
        ("WAREHOUSE_TABLE", 'x"; drop table y; --'),
        ("WAREHOUSE_SCHEMA", "Retail Schema"),
        ("KCL_INITIAL_POSITION", "AT_SEQUENCE_NUMBER"),
        ("KCL_RETRIEVAL_MODE", "FANOUT"),
        ("KCL_LEASE_TABLE_PITR", "yes"),
        ("KCL_MAX_RECORDS", "20000"),
        ("REDSHIFT_JSONPATHS_URI", "http://example.com/paths"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(variable, value):
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def test_redshift_needs_a_role_arn():
    with pytest.raises(SettingsError, match="REDSHIFT_IAM_ROLE"):
        Settings.from_env({"WAREHOUSE_DIALECT": "redshift"})
    settings = Settings.from_env({
        "WAREHOUSE_DIALECT": "redshift", "REDSHIFT_IAM_ROLE": "arn:aws:iam::123456789012:role/copy",
    })
    assert settings.redshift_iam_role.endswith("role/copy")


def test_every_setting_has_one_variable():
    fields = set(Settings.__dataclass_fields__)
    assert set(ENVIRONMENT) == fields
    assert len(set(ENVIRONMENT.values())) == len(ENVIRONMENT)


def test_worker_id_prefers_configuration():
    assert Settings(kcl_worker_id="task-1").worker_id() == "task-1"
    assert Settings().worker_id()  # falls back to the host name


def test_the_readme_documents_every_variable():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [v for v in ENVIRONMENT.values() if f"`{v}`" not in readme]
    assert missing == []


def test_kcl_choices_are_read():
    settings = Settings.from_env({
        "KCL_INITIAL_POSITION": "AT_TIMESTAMP", "KCL_INITIAL_TIMESTAMP": "2026-12-01T06:30:00Z",
        "KCL_RETRIEVAL_MODE": "fanout", "KCL_CONSUMER_NAME": "retail-efo", "KCL_LEASE_TABLE_PITR": "TRUE",
    })
    assert settings.initial_timestamp.isoformat() == "2026-12-01T06:30:00+00:00"
    assert (settings.kcl_retrieval_mode, settings.kcl_consumer_name) == ("fanout", "retail-efo")
    assert settings.kcl_lease_table_pitr is True
    assert Settings.from_env({"KCL_LEASE_TABLE_PITR": "false"}).kcl_lease_table_pitr is False
    assert Settings.from_env({}).kcl_lease_table_billing_mode == "PAY_PER_REQUEST"


# environment, the variable the refusal names, a phrase of its reason
REFUSED_KCL_COMBINATIONS = {
    "AT_TIMESTAMP without its time": (
        {"KCL_INITIAL_POSITION": "AT_TIMESTAMP"}, "KCL_INITIAL_TIMESTAMP", "required with"),
    "a time without AT_TIMESTAMP": (
        {"KCL_INITIAL_TIMESTAMP": "2026-12-01T06:30:00Z"}, "KCL_INITIAL_TIMESTAMP", "refused without it"),
    "a time that is not ISO-8601": (
        {"KCL_INITIAL_POSITION": "AT_TIMESTAMP", "KCL_INITIAL_TIMESTAMP": "yesterday"},
        "KCL_INITIAL_TIMESTAMP", "ISO-8601 UTC"),
    "a time without a zone": (
        {"KCL_INITIAL_POSITION": "AT_TIMESTAMP", "KCL_INITIAL_TIMESTAMP": "2026-12-01T06:30:00"},
        "KCL_INITIAL_TIMESTAMP", "ISO-8601 UTC"),
    "a time in another zone": (
        {"KCL_INITIAL_POSITION": "AT_TIMESTAMP", "KCL_INITIAL_TIMESTAMP": "2026-12-01T06:30:00+01:00"},
        "KCL_INITIAL_TIMESTAMP", "ISO-8601 UTC"),
    "a consumer name while polling": (
        {"KCL_CONSUMER_NAME": "retail-efo"}, "KCL_CONSUMER_NAME", "only with KCL_RETRIEVAL_MODE=fanout"),
    "a consumer name Kinesis refuses": (
        {"KCL_RETRIEVAL_MODE": "fanout", "KCL_CONSUMER_NAME": "retail efo"},
        "KCL_CONSUMER_NAME", "a stream consumer's name"),
    "a provisioned lease table": (
        {"KCL_LEASE_TABLE_BILLING_MODE": "PROVISIONED"}, "KCL_LEASE_TABLE_BILLING_MODE", "no property"),
}


@pytest.mark.parametrize("environment, variable, reason", REFUSED_KCL_COMBINATIONS.values(),
                         ids=REFUSED_KCL_COMBINATIONS.keys())
def test_bad_kcl_combinations_are_refused_naming_the_variable(environment, variable, reason):
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(environment)
    assert str(refused.value).startswith(f"{variable}=")
    assert reason in str(refused.value)
