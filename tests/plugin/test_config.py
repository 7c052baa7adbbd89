import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from mailunblock.plugin.cli import main
from mailunblock.plugin.config import ConfigError, SecretRef, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = {
    "jira": {
        "url": "https://help.example.com/",
        "email": "bot@example.com",
        "api_token": "env:JIRA_TOKEN",
        "approver_groups": ["helpdesk-agents"],
    },
    "tenants": [
        {
            "name": "contoso",
            "tenant_id": "t-1",
            "domains": ["Contoso.com"],
            "client_id": "c-1",
            "client_secret": "env:CONTOSO_SECRET",
        }
    ],
}


def _with(section: str, **changes: object) -> dict:
    data = json.loads(json.dumps(MINIMAL))
    if section == "tenant":
        data["tenants"][0].update(changes)
    else:
        data.setdefault(section, {}).update(changes)
    return data


def test_defaults_follow_the_source_guidance() -> None:
    cfg = parse_config(MINIMAL)
    assert (cfg.policy.eta_min_hours, cfg.policy.eta_max_hours) == (3.0, 4.0)
    assert cfg.policy.escalate_after_hours == 24.0
    assert cfg.policy.excluded_roles == ("*",)
    assert cfg.policy.auto_approve is False
    assert cfg.jira.url == "https://help.example.com"
    assert cfg.jira.search_jql.startswith('labels = "mail-blocked" AND statusCategory != Done')
    assert cfg.tenant_for_domain("CONTOSO.COM").name == "contoso"
    assert cfg.tenant_for_domain("gmail.com") is None
    assert cfg.database_url.startswith("sqlite:///") and cfg.database_url.endswith("mailunblock.db")


@pytest.mark.parametrize(
    ("data", "key", "fix"),
    [
        (_with("jira", api_token="hunter2-inline"), "jira.api_token", "env:VARIABLE_NAME"),
        (_with("tenant", client_secret="s3cr3t"), "tenants[contoso].client_secret", "file:/path"),
        (_with("tenant", authority_host="http://login"), "tenants[contoso].authority_host", "https://"),
        (_with("tenant", certificate_path="/x.pfx"), "tenants[contoso]", "exactly one credential"),
        (_with("jira", approver_groups=[]), "jira", "approver_groups"),
        (_with("jira", approver_roles=["Service Desk Team"]), "jira", "approver_role_projects"),
        (_with("jira", internal_notes="group"), "jira", "internal_visibility"),
        (_with("policy", eta_min_hours=5), "policy", "eta_max_hours must be >="),
        (_with("policy", time_zone="Mars/Olympus"), "policy.time_zone", "IANA"),
        (_with("policy", colour="blue"), "policy.colour", "unknown key"),
        (_with("store", url="postgresql+psycopg://mu:hunter2@db/mu"), "store.url", "env:MAILUNBLOCK_DATABASE_URL"),
        ({"tenants": MINIMAL["tenants"]}, "jira", "required key is missing"),
    ],
)
def test_invalid_values_name_the_key_and_the_fix(data: dict, key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    message = str(caught.value)
    assert f"  {key}:" in message
    assert fix in message


def test_an_inline_secret_is_never_echoed_back() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_with("jira", api_token="hunter2-inline"))
    assert "hunter2" not in str(caught.value)


def test_labels_with_spaces_are_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="'mail-blocked'"):
        parse_config(_with("jira", labels={"trigger": "mail blocked"}))


def test_a_domain_belongs_to_one_tenant() -> None:
    data = json.loads(json.dumps(MINIMAL))
    data["tenants"].append({**data["tenants"][0], "name": "other"})
    with pytest.raises(ConfigError, match="belongs to one tenant"):
        parse_config(data)


def test_secret_references_resolve_from_env_and_relative_files(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "contoso").write_text("from-file\n")
    cfg_file = tmp_path / "mailunblock.toml"
    cfg_file.write_text(
        '[jira]\nurl = "https://j"\nemail = "b@x"\napi_token = "env:JIRA_TOKEN"\n'
        'approver_groups = ["g"]\n[[tenants]]\nname = "c"\ntenant_id = "t"\ndomains = ["c.com"]\n'
        'client_id = "i"\nclient_secret = "file:secrets/contoso"\n'
    )
    monkeypatch.setenv("JIRA_TOKEN", "from-env")
    cfg = load_config(cfg_file)
    assert cfg.secret(cfg.jira.api_token) == "from-env"
    assert cfg.secret(cfg.tenants[0].client_secret) == "from-file"
    monkeypatch.delenv("JIRA_TOKEN")
    with pytest.raises(ConfigError, match="JIRA_TOKEN is not set"):
        cfg.secret(cfg.jira.api_token)


def test_missing_secret_file_message_names_the_reference_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file:nope"):
        SecretRef("file:nope").resolve()


def test_unreadable_and_invalid_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[jira\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_example_config_is_valid_and_schema_is_current() -> None:
    cfg = load_config(ROOT / "config" / "example.toml")
    assert cfg.tenants[0].name == "contoso"
    result = CliRunner().invoke(main, ["config", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.output) == json.loads((ROOT / "config" / "schema.json").read_text()), (
        "config/schema.json is stale: run `mailunblock config schema > config/schema.json`"
    )


def test_config_check_reports_unresolved_secrets_without_a_traceback(monkeypatch) -> None:
    monkeypatch.delenv("MAILUNBLOCK_JIRA_API_TOKEN", raising=False)
    result = CliRunner().invoke(main, ["config", "check", "--config", str(ROOT / "config" / "example.toml")])
    assert result.exit_code == 1
    assert "MAILUNBLOCK_JIRA_API_TOKEN is not set" in result.output
    assert "Traceback" not in result.output


def test_config_check_on_invalid_file_exits_non_zero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[jira]\nurl = "ftp://x"\n')
    result = CliRunner().invoke(main, ["config", "check", "--config", str(bad)])
    assert result.exit_code == 1
    assert "jira.url" in result.output and "Traceback" not in result.output


def test_a_database_url_can_be_given_by_reference(monkeypatch) -> None:
    monkeypatch.setenv("MU_DB", "postgresql+psycopg://mu:pw@db/mu")
    cfg = parse_config(_with("store", url="env:MU_DB"))
    assert cfg.database_url == "postgresql+psycopg://mu:pw@db/mu"
    assert parse_config(_with("store", url="postgresql+psycopg://mu@db/mu")).database_url.endswith("@db/mu")


@pytest.mark.parametrize(("cloud", "authority", "graph", "exchange"), [
    ("global", "https://login.microsoftonline.com", "https://graph.microsoft.com", "https://outlook.office365.com"),
    ("usgov", "https://login.microsoftonline.us", "https://graph.microsoft.us", "https://outlook.office365.us"),
    ("dod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us", "https://webmail.apps.mil"),
    ("china", "https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn", "https://partner.outlook.cn"),
])
def test_a_tenant_cloud_sets_authority_urls_and_resources(cloud: str, authority: str, graph: str,
                                                          exchange: str) -> None:
    tenant = parse_config(_with("tenant", cloud=cloud)).tenants[0]
    assert (tenant.authority_host, tenant.graph_url, tenant.exchange_url) == (authority, graph, exchange)
    assert (tenant.graph_resource, tenant.exchange_resource) == (graph, exchange)


def test_an_overridden_url_keeps_the_cloud_resource() -> None:
    tenant = parse_config(_with("tenant", cloud="usgov", graph_url="https://graph-gw.corp.example/",
                                exchange_resource="https://outlook.office365.us/")).tenants[0]
    assert tenant.graph_url == "https://graph-gw.corp.example"
    assert tenant.graph_resource == "https://graph.microsoft.us"
    assert tenant.exchange_resource == "https://outlook.office365.us"
    with pytest.raises(ConfigError, match=r"tenants\[contoso\]\.cloud"):
        parse_config(_with("tenant", cloud="germany"))


@pytest.mark.parametrize("value", ["yes", "on", 1, "true"])
def test_booleans_are_strict_and_the_error_names_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"jira\.jsm_native_approval: Input should be a valid boolean"):
        parse_config(_with("jira", jsm_native_approval=value))
    with pytest.raises(ConfigError, match=r"policy\.auto_approve"):
        parse_config(_with("policy", auto_approve=value))


def test_an_error_inside_a_tenant_names_the_tenant() -> None:
    data = _with("tenant", client_secret="inline-secret")
    data["tenants"].append({**data["tenants"][0], "name": "fabrikam", "domains": ["fabrikam.com"],
                            "client_secret": "env:X", "tenant_id": 5})
    with pytest.raises(ConfigError) as raised:
        parse_config(data)
    assert "tenants[contoso].client_secret" in str(raised.value)
    assert "tenants[fabrikam].tenant_id" in str(raised.value)
    assert "inline-secret" not in str(raised.value)


def test_data_center_signs_in_with_a_token_or_a_username_and_password() -> None:
    dc = {"url": "https://jira.corp.example", "deployment": "datacenter", "approver_groups": ["agents"]}
    basic = parse_config({**MINIMAL, "jira": {**dc, "username": "bot", "password": "env:JIRA_PASSWORD"}})
    assert basic.jira.username == "bot" and basic.jira.password == "env:JIRA_PASSWORD"
    assert parse_config({**MINIMAL, "jira": {**dc, "personal_access_token": "file:pat"}}).jira.password is None
    for bad, why in (({"username": "bot"}, "both 'username' and 'password'"),
                     ({"username": "bot", "password": "hunter2"}, "by reference"),
                     ({"username": "bot", "password": "env:P", "personal_access_token": "env:T"}, "not both"),
                     ({}, "personal_access_token")):
        with pytest.raises(ConfigError, match=why):
            parse_config({**MINIMAL, "jira": {**dc, **bad}})


def test_the_default_resolve_transition_is_the_one_into_a_done_status() -> None:
    from mailunblock.connectors.jira import INTO_DONE
    from mailunblock.plugin.services import remediation_policy

    assert parse_config(MINIMAL).jira.transitions.resolve is None
    assert remediation_policy(parse_config(MINIMAL)).resolve_transition == INTO_DONE
    named = _with("jira", transitions={"resolve": "Resolve this issue"})
    assert remediation_policy(parse_config(named)).resolve_transition == "Resolve this issue"
