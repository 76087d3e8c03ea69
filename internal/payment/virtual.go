package payment

import (
	"strings"
	"time"
	"unicode/utf8"
)

// The payment methods payrail tells apart, in the PG's words (Payment.method).
const (
	MethodCard           = "카드"
	MethodVirtualAccount = "가상계좌"
)

// VirtualAccount is the bank account a virtual-account payment is paid into
// (Toss's Payment.virtualAccount): shown to the merchant, who shows it to
// the buyer. The PG's secret for the payment's DEPOSIT_CALLBACK is not part
// of it; the store keeps that sealed.
type VirtualAccount struct {
	AccountNumber string    `json:"accountNumber"`
	BankCode      string    `json:"bankCode"`
	CustomerName  string    `json:"customerName"`
	DueDate       time.Time `json:"dueDate"`
}

// BankCodes are the banks TossPayments names by two-digit code (its "은행
// 코드" table; 2nd-hand, TOSS.md), with their Korean names: the only values
// a refund account's bank may take.
var BankCodes = map[string]string{
	"02": "KDB산업", "03": "IBK기업", "06": "KB국민", "07": "Sh수협", "11": "NH농협",
	"12": "단위농협", "20": "우리", "23": "SC제일", "27": "씨티", "31": "iM뱅크(대구)",
	"32": "부산", "34": "광주", "35": "제주", "37": "전북", "39": "경남",
	"45": "새마을", "48": "신협", "50": "저축은행", "54": "HSBC", "64": "산림조합",
	"71": "우체국", "81": "하나", "88": "신한", "89": "케이뱅크", "90": "카카오뱅크",
	"92": "토스뱅크",
}

// BankName returns the bank's Korean name, or the code itself when unknown.
func BankName(code string) string {
	if n, ok := BankCodes[code]; ok {
		return n
	}
	return code
}

// RefundAccount is the buyer's bank account a deposited virtual-account
// payment is refunded to (Toss's cancel field refundReceiveAccount). It is
// personal data: never logged or written to history in clear (Masked).
type RefundAccount struct {
	Bank          string `json:"bank"`
	AccountNumber string `json:"accountNumber"`
	HolderName    string `json:"holderName"`
}

// Validate checks a refund account before anything is stored: a bank from
// BankCodes, an account number of 6–20 digits (no dashes), a holder name of
// 1–60 characters. INVALID_REQUEST names the field, never echoes the value.
func (a RefundAccount) Validate() error {
	if _, ok := BankCodes[a.Bank]; !ok {
		return Errorf(CodeInvalidRequest, "refundReceiveAccount.bank must be one of TossPayments' two-digit bank codes (e.g. \"88\" for 신한)")
	}
	if n := len(a.AccountNumber); n < 6 || n > 20 || strings.Trim(a.AccountNumber, "0123456789") != "" {
		return Errorf(CodeInvalidRequest, "refundReceiveAccount.accountNumber must be 6–20 digits, without dashes")
	}
	name := strings.TrimSpace(a.HolderName)
	if name == "" || utf8.RuneCountInString(name) > 60 || strings.ContainsAny(name, "\x00\r\n\t") {
		return Errorf(CodeInvalidRequest, "refundReceiveAccount.holderName must be 1–60 characters")
	}
	return nil
}

// Masked is the account as logs and history show it: the bank, the last
// four digits and the holder's first character.
func (a RefundAccount) Masked() map[string]any {
	return map[string]any{"bank": a.Bank, "accountNumber": MaskDigits(a.AccountNumber), "holderName": maskName(a.HolderName)}
}

// MaskDigits keeps the last four characters of an account number.
func MaskDigits(s string) string {
	if len(s) <= 4 {
		return strings.Repeat("*", len(s))
	}
	return strings.Repeat("*", len(s)-4) + s[len(s)-4:]
}

func maskName(s string) string {
	r := []rune(strings.TrimSpace(s))
	if len(r) == 0 {
		return ""
	}
	return string(r[0]) + strings.Repeat("*", len(r)-1)
}
