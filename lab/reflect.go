package lab

import (
	"reflect"
	"sort"
	"strings"
)

// yamlFields returns the yaml keys of the struct out points to.
func yamlFields(out any) map[string]bool {
	t := reflect.TypeOf(out).Elem()
	m := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if name != "-" {
			m[name] = true
		}
	}
	return m
}

func sortedKeys(m map[string]bool) []string {
	s := make([]string, 0, len(m))
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}
