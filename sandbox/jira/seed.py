"""The demo ``[jira]`` scenario: a JSM-like service desk ``HELP`` and its people.

EMULATOR DATA. Reporters are users of two Microsoft 365 tenants — contoso.com (English) and
fabrikam.fr (French) — plus one address no tenant owns. The Microsoft emulators use the same addresses:

==============================  =======  ================  =============================================
email                           locale   time zone         role in the demo
==============================  =======  ================  =============================================
adele.vance@contoso.com         en_US    America/New_York  restricted sender, HELP-1
megan.bowen@contoso.com         en_US    America/New_York  reports for a colleague (HELP-3), noise HELP-6
lidia.holloway@contoso.com      en_US    America/New_York  the blocked colleague (affected account, HELP-3)
ben.walters@contoso.com         en_US    America/New_York  tenant admin: must not be automated, HELP-4
chloe.dupont@fabrikam.fr        fr_FR    Europe/Paris      French restricted sender, HELP-2
someone@gmail.com               en_GB    Europe/London     no tenant owns gmail.com, HELP-5
==============================  =======  ================  =============================================

Staff: ``mailunblock`` (the bot), agents ``alice`` and ``bob`` (group ``helpdesk-agents``, role
"Service Desk Team"), and ``mallory`` (licensed user, no role, not an agent).
"""

from __future__ import annotations

from typing import Any

_STAFF_DOMAIN = "msp-helpdesk.example"


def _customer(name: str, display: str, email: str, locale: str, zone: str) -> dict[str, Any]:
    return {
        "name": name,
        "display_name": display,
        "email": email,
        "locale": locale,
        "time_zone": zone,
        "account_type": "customer",
    }


def demo_scenario() -> dict[str, Any]:
    """A fresh copy of the demo ``[jira]`` table (same shape as a scenario TOML's)."""
    return {
        "deployment": "cloud",
        "site": "contoso-help",
        "bot": "mailunblock",
        "search_lag_seconds": 0,
        "groups": [{"name": "helpdesk-agents"}, {"name": "jira-administrators"}],
        "users": [
            {"name": "mailunblock", "display_name": "mailunblock (bot)",
             "email": f"mailunblock@{_STAFF_DOMAIN}", "time_zone": "Europe/London",
             "locale": "en_GB", "groups": ["helpdesk-agents"]},
            {"name": "alice", "display_name": "Alice Martin", "email": f"alice@{_STAFF_DOMAIN}",
             "time_zone": "Europe/London", "locale": "en_GB", "groups": ["helpdesk-agents"]},
            {"name": "bob", "display_name": "Bob Nguyen", "email": f"bob@{_STAFF_DOMAIN}",
             "time_zone": "Europe/London", "locale": "en_GB",
             "groups": ["helpdesk-agents", "jira-administrators"]},
            {"name": "mallory", "display_name": "Mallory Stone", "email": f"mallory@{_STAFF_DOMAIN}",
             "time_zone": "Europe/London", "locale": "en_GB"},
            _customer("adele.vance", "Adele Vance", "adele.vance@contoso.com", "en_US",
                      "America/New_York"),
            _customer("megan.bowen", "Megan Bowen", "megan.bowen@contoso.com", "en_US",
                      "America/New_York"),
            _customer("lidia.holloway", "Lidia Holloway", "lidia.holloway@contoso.com", "en_US",
                      "America/New_York"),
            _customer("ben.walters", "Ben Walters", "ben.walters@contoso.com", "en_US",
                      "America/New_York"),
            _customer("chloe.dupont", "Chloé Dupont", "chloe.dupont@fabrikam.fr", "fr_FR",
                      "Europe/Paris"),
            _customer("someone", "Someone", "someone@gmail.com", "en_GB", "Europe/London"),
        ],
        "projects": [
            {
                "key": "HELP",
                "id": "10000",
                "name": "IT Help Desk",
                "service_desk": True,
                "issue_type": "Service Request",
                "roles": [
                    {"id": 10100, "name": "Service Desk Team",
                     "description": "Agents who work on requests",
                     "users": ["mailunblock"], "groups": ["helpdesk-agents"]},
                    {"id": 10101, "name": "Service Desk Customers",
                     "description": "Customers of the service desk"},
                    {"id": 10002, "name": "Administrators", "description": "Project administrators",
                     "users": ["bob"]},
                ],
            }
        ],
        "workflow": {
            "initial": "Waiting for support",
            "statuses": [
                {"id": "10001", "name": "Waiting for support", "category": "new"},
                {"id": "3", "name": "In Progress", "category": "indeterminate"},
                {"id": "10002", "name": "Waiting for customer", "category": "indeterminate"},
                {"id": "10003", "name": "Escalated", "category": "indeterminate"},
                {"id": "10004", "name": "Resolved", "category": "done"},
                {"id": "6", "name": "Closed", "category": "done"},
            ],
            "transitions": [
                {"id": "11", "name": "Start progress", "to": "In Progress",
                 "from": ["Waiting for support", "Waiting for customer"]},
                {"id": "21", "name": "Respond to customer", "to": "Waiting for customer",
                 "from": ["Waiting for support", "In Progress"]},
                {"id": "31", "name": "Escalate", "to": "Escalated",
                 "from": ["Waiting for support", "In Progress", "Waiting for customer"]},
                {"id": "41", "name": "Resolve", "to": "Resolved",
                 "from": ["Waiting for support", "In Progress", "Waiting for customer",
                          "Escalated"]},
                {"id": "51", "name": "Back to in progress", "to": "In Progress",
                 "from": ["Escalated"]},
                {"id": "61", "name": "Reopen", "to": "Waiting for support", "from": ["Resolved"]},
                {"id": "71", "name": "Close", "to": "Closed", "from": ["Resolved"]},
            ],
        },
        "link_types": [
            {"id": "10000", "name": "Relates", "inward": "relates to", "outward": "relates to"},
            {"id": "10001", "name": "Duplicate", "inward": "is duplicated by",
             "outward": "duplicates"},
            {"id": "10002", "name": "Blocks", "inward": "is blocked by", "outward": "blocks"},
        ],
        "issues": [
            {"summary": "I can't send email anymore", "reporter": "adele.vance@contoso.com",
             "labels": ["mail-blocked"], "created_minutes_ago": 45,
             "description": "Every message bounces with:\n550 5.1.8 Access denied, bad outbound "
                            "sender.\n\nI can still receive mail."},
            {"summary": "Je ne peux plus envoyer d'e-mails", "reporter": "chloe.dupont@fabrikam.fr",
             "labels": ["mail-blocked"], "created_minutes_ago": 30,
             "description": "Tous mes messages reviennent avec l'erreur 550 5.1.8."},
            {"summary": "Lidia's mails are rejected", "reporter": "megan.bowen@contoso.com",
             "labels": ["mail-blocked"], "created_minutes_ago": 25,
             "affected_account": "lidia.holloway@contoso.com",
             "description": "My colleague Lidia cannot send any email since this morning."},
            {"summary": "Outbound mail blocked", "reporter": "ben.walters@contoso.com",
             "labels": ["mail-blocked"], "created_minutes_ago": 20,
             "description": "NDR 5.1.8 on every message I send."},
            {"summary": "cannot send mail", "reporter": "someone@gmail.com",
             "labels": ["mail-blocked"], "created_minutes_ago": 15,
             "description": "My emails don't go out."},
            {"summary": "Printer on 3rd floor is jammed", "reporter": "megan.bowen@contoso.com",
             "labels": ["hardware"], "created_minutes_ago": 90, "status": "In Progress",
             "description": "Paper jam in tray 2."},
        ],
    }
