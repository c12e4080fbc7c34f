#!/usr/bin/env python3
"""Attack/benign clients for the capture lab that need several tries in ONE connection
(the stock command-line clients give up after the first failure). Python stdlib only.

  clients.py smtp-auth HOST PORT MECH USER PW [PW...]   EHLO, then one AUTH per password
  clients.py smtp-auth-send HOST PORT MECH USER FROM TO PW [PW...]
                                                        the same, then (logged in) one message
  clients.py imap HOST USER PW [PW...]                  one LOGIN per password, then LOGOUT
  clients.py pop3 HOST USER PW [PW...]                  USER/PASS per password, then QUIT
  clients.py ftp HOST USER PW [PW...]                   USER/PASS per password, then QUIT
  clients.py raw HOST PORT WAIT DATA                    connect, wait WAIT s (read banner), send
                                                        DATA (\\r\\n escapes allowed), read, close
Exit code 0 when the last try succeeded, 1 otherwise. Prints each server reply.
"""
import ftplib
import imaplib
import poplib
import smtplib
import socket
import sys
import time


def smtp_auth(host, port, mech, user, *pws, send=None):
    s = smtplib.SMTP(host, int(port), local_hostname="client.example.net", timeout=30)
    s.ehlo()
    ok = False
    for pw in pws:
        s.user, s.password = user, pw
        try:
            code, resp = s.auth(mech.upper(), getattr(s, "auth_" + mech.lower()), initial_response_ok=True)
            print("AUTH", code, resp)
            ok = True
            break
        except smtplib.SMTPAuthenticationError as e:
            print("AUTH fail", e.smtp_code, e.smtp_error)
            ok = False
        except smtplib.SMTPServerDisconnected as e:
            print("disconnected", e)
            return 1
    if ok and send:
        frm, to = send
        msg = f"From: <{frm}>\r\nTo: <{to}>\r\nSubject: lab\r\n\r\nhello\r\n"
        print("sent", s.sendmail(frm, [to], msg))
    try:
        s.quit()
    except smtplib.SMTPServerDisconnected:
        pass
    return 0 if ok else 1


def imap(host, user, *pws):
    m = imaplib.IMAP4(host, 143, timeout=30)
    ok = False
    for pw in pws:
        try:
            print(m.login(user, pw))
            ok = True
            break
        except imaplib.IMAP4.error as e:
            print("LOGIN fail", e)
        except (OSError, imaplib.IMAP4.abort) as e:
            print("aborted", e)
            return 1
    try:
        m.logout()
    except Exception as e:  # noqa: BLE001
        print("logout", e)
    return 0 if ok else 1


def pop3(host, user, *pws):
    p = poplib.POP3(host, 110, timeout=30)
    ok = False
    for pw in pws:
        try:
            p.user(user)
            print(p.pass_(pw))
            ok = True
            break
        except poplib.error_proto as e:
            print("PASS fail", e)
        except OSError as e:
            print("aborted", e)
            return 1
    try:
        p.quit()
    except Exception as e:  # noqa: BLE001
        print("quit", e)
    return 0 if ok else 1


def ftp(host, user, *pws):
    f = ftplib.FTP(host, timeout=30)
    ok = False
    for pw in pws:
        try:
            print(f.login(user, pw))
            ok = True
            break
        except ftplib.error_perm as e:
            print("LOGIN fail", e)
        except (OSError, EOFError, ftplib.error_temp) as e:
            print("aborted", e)
            return 1
    try:
        f.quit()
    except Exception as e:  # noqa: BLE001
        print("quit", e)
    return 0 if ok else 1


def raw(host, port, wait, data):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect((host, int(port)))
    time.sleep(float(wait))
    s.setblocking(False)
    try:
        print(s.recv(4096))
    except BlockingIOError:
        pass
    s.setblocking(True)
    s.sendall(data.encode().decode("unicode_escape").encode("latin-1"))
    try:
        print(s.recv(4096))
    except OSError as e:
        print("recv", e)
    time.sleep(0.5)
    s.close()
    return 0


def smtp_auth_send(host, port, mech, user, frm, to, *pws):
    return smtp_auth(host, port, mech, user, *pws, send=(frm, to))


def main(argv):
    cmd, args = argv[1], argv[2:]
    fn = {"smtp-auth": smtp_auth, "smtp-auth-send": smtp_auth_send, "imap": imap, "pop3": pop3, "ftp": ftp, "raw": raw}[cmd]
    return fn(*args)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
